"""Exception types shared by the core and the layers above it.

tf.estimator raises `ValueError` in some places where Python's convention is `TypeError` (a
model_fn that returns something other than an `EstimatorSpec`, an exporter without a string name),
and the reverse elsewhere. A ported `except ValueError:` / `assertRaises(ValueError)` must still
catch what jestimator raises, and so must the natural `except TypeError:`: where the two differ,
jestimator raises `WrongTypeError`, which is both.
"""
from __future__ import annotations


class WrongTypeError(TypeError, ValueError):
  """An argument or return value of the wrong type; caught by `except TypeError` (Python's
  convention) and by `except ValueError` (what tf.estimator raised there)."""


__all__ = ['WrongTypeError']
