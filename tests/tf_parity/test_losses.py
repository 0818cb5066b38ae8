"""`jestimator.losses` against TF 2.15's `tf.compat.v1.losses` (values and gradients, ties
included) from `data/losses.json` (written by `tf_scripts/losses.py`)."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jestimator import losses

_DATA = json.load(open(os.path.join(os.path.dirname(__file__), 'data', 'losses.json')))
_CASES = _DATA['cases']


def _call(case, x):
  kwargs = dict(case['kwargs'])
  if 'reduction' in kwargs:
    kwargs['reduction'] = getattr(losses.Reduction, kwargs['reduction'])
  if case['weights'] is not None:
    kwargs['weights'] = jnp.asarray(case['weights'], jnp.float32)
  labels = np.asarray(case['labels'], np.int64 if case['fn'].startswith('sparse') else np.float32)
  return getattr(losses, case['fn'])(labels, x, **kwargs)


@pytest.mark.parametrize('case', _CASES, ids=[
    f"{i}-{c['fn']}-{c['kwargs'].get('reduction', 'default')}" for i, c in enumerate(_CASES)])
def test_value_and_gradient_match_tf(case):
  x = jnp.asarray(case['x'], jnp.float32)
  value = jax.jit(lambda x: _call(case, x))(x)
  grad = jax.grad(lambda x: jnp.sum(_call(case, x)))(x)
  np.testing.assert_allclose(value, case['value'], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(grad, case['grad'], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('case', _DATA['shape_errors'], ids=lambda c: c['fn'])
def test_mismatched_shapes_raise_as_tf(case):
  assert case['raises_value_error']
  with pytest.raises(ValueError, match='incompatible'):
    getattr(losses, case['fn'])(np.asarray(case['labels'], np.float32),
                                np.asarray(case['x'], np.float32))


def test_weights_that_do_not_broadcast_raise():
  with pytest.raises(ValueError, match='cannot be broadcast'):
    losses.mean_squared_error(np.zeros((3, 1)), np.zeros((3, 1)), weights=np.ones(3))


def test_reduction_default_and_validation():
  assert losses.Reduction.SUM_OVER_NONZERO_WEIGHTS == losses.Reduction.SUM_BY_NONZERO_WEIGHTS
  with pytest.raises(ValueError, match='Invalid Reduction'):
    losses.mean_squared_error(np.zeros(2), np.zeros(2), reduction='mean')


def test_sparse_softmax_out_of_range_label():
  logits = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match='outside'):
    losses.sparse_softmax_cross_entropy(np.array([0, 3]), logits)
  under_jit = jax.jit(lambda y: losses.sparse_softmax_cross_entropy(y, logits))(np.array([0, 3]))
  assert np.isnan(under_jit)
