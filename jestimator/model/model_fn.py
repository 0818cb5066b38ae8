"""Turning a TF-style `model_fn` into pure Flax `init` / `apply` functions.

A `model_fn(features, labels, mode, params, config)` builds its network with Flax linen layers
inline (`nn.Dense(64)(x)`), as in a `@nn.compact` method, and returns an `EstimatorSpec`.
`ModelFn` wraps it in a linen module per mode, so the Estimator (and hand-written loops, see
`jestimator.steps`) can call pure `init(rng, features, labels, mode)` and `apply(...)`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax

from jestimator.model import padding
from jestimator.model.errors import WrongTypeError
from jestimator.model import summary as summary_lib
from jestimator.model.fn_args import arg_names
from jestimator.model.mode_keys import ModeKeys, check_mode
from jestimator.model.spec import EstimatorSpec

_ALLOWED_ARGS = {'features', 'labels', 'mode', 'params', 'config'}


class _ModelFnModule(nn.Module):
  """A linen module whose body is the user's model_fn (bound to mode, params and config)."""
  body: Callable[..., EstimatorSpec]

  @nn.compact
  def __call__(self, features, labels):
    return self.body(features, labels)


@dataclasses.dataclass(frozen=True)
class TracedSpec:
  """The result of tracing a model_fn in one mode.

  Attributes:
    spec: the `EstimatorSpec` (static parts only: optimizer, hooks, string and export outputs).
    padding_aware: whether the model_fn read `jestimator.example_mask()` in this mode, i.e. its
      loss honours the mask, so a short batch may be padded to the compiled size.
    has_outputs: whether it writes `jestimator.summary` values or builds `LoggingTensorHook`s;
      without any, the steps' `with_outputs` variants would add nothing (and need no compile).
  """
  spec: EstimatorSpec
  padding_aware: bool
  has_outputs: bool = True


class ModelFn:
  """A validated `model_fn` with pure `init` and `apply`.

  Args:
    model_fn: `model_fn(features, labels, mode, params, config)`; only `features` is required and
      only the arguments it names are passed.
    params: hyper-parameters given to the model_fn as `params` (a fresh deep copy per call).
    config: the `RunConfig`, given as `config`.
  """

  def __init__(self, model_fn: Callable[..., EstimatorSpec], params: Any = None,
               config: Any = None):
    if not callable(model_fn):
      raise TypeError(f'model_fn must be callable, got {type(model_fn).__name__}')
    names, var_kw = arg_names(model_fn)
    if 'features' not in names:
      raise ValueError('model_fn must take an argument named "features"')
    unknown = names - _ALLOWED_ARGS
    if unknown:
      raise ValueError(f'model_fn has argument(s) {sorted(unknown)} that the Estimator cannot '
                       f'supply; allowed names are {sorted(_ALLOWED_ARGS)}')
    if params is not None and 'params' not in names and not var_kw:
      raise ValueError('params were given to the Estimator but model_fn takes no "params" '
                       'argument')
    self.fn = model_fn
    self.takes_labels = 'labels' in names or var_kw
    self._names = names if not var_kw else _ALLOWED_ARGS
    self.params = copy.deepcopy(params)
    self.config = config

  def module(self, mode: str) -> _ModelFnModule:
    """The linen module running the model_fn in `mode`."""
    check_mode(mode)
    return _ModelFnModule(body=functools.partial(self._call, mode))

  def _call(self, mode, features, labels) -> EstimatorSpec:
    # A fresh deep copy per call, as TF's `Estimator.params`: a model_fn that mutates its params
    # must not change what the next trace (eval, predict, a retrace) or `Estimator.params` sees.
    available = dict(features=features, labels=labels, mode=mode,
                     params=copy.deepcopy(self.params), config=self.config)
    spec = self.fn(**{k: v for k, v in available.items() if k in self._names})
    if not isinstance(spec, EstimatorSpec):
      # TF raises ValueError here; the natural TypeError is caught as well.
      raise WrongTypeError(f'model_fn must return an EstimatorSpec, got {type(spec).__name__}')
    if spec.mode != mode:
      raise ValueError(f'model_fn returned an EstimatorSpec for mode {spec.mode!r} when called '
                       f'in mode {mode!r}')
    return spec

  def init(self, rng: jax.Array, features, labels, mode: str = ModeKeys.TRAIN):
    """Initial variables `{'params': ..., <collections>}` for a batch of features/labels."""
    params_rng, dropout_rng = jax.random.split(rng)
    with padding.mask_scope(None), _summary_scope():
      return self.module(mode).init({'params': params_rng, 'dropout': dropout_rng},
                                    features, labels)

  def apply(self, variables, features, labels, mode: str, rng: jax.Array | None = None,
            mask: jax.Array | None = None, mutable: Any = False):
    """Runs the model_fn; returns `(spec, updated_collections)` (the latter {} unless mutable).

    `mask` ([batch] float32 of real rows) is published to `jestimator.example_mask()` and the
    metrics (`trace` reports whether the model_fn asks for it).
    """
    return self._run(variables, features, labels, mode, rng, mask, mutable)[0]

  def _run(self, variables, features, labels, mode, rng, mask, mutable):
    """`((spec, updated_collections), whether the model_fn read the example mask)`."""
    rngs = {'dropout': rng} if rng is not None else {}
    mutable = mutable or False
    with padding.mask_scope(mask) as scope, _summary_scope():
      out = self.module(mode).apply(variables, features, labels, rngs=rngs, mutable=mutable)
    return (out if mutable else (out, {})), scope.used

  def trace(self, variables, features, labels, mode: str) -> TracedSpec:
    """What an abstract trace of the model_fn in `mode` finds out; runs no computation.

    Arrays in the returned spec are tracers and must not be used: only its static parts
    (optimizer, hooks, string outputs, export outputs) are.
    """
    box = {}

    def capture(v, f, l):
      train = mode == ModeKeys.TRAIN
      (spec, _), box['aware'] = self._run(v, f, l, mode, jax.random.key(0) if train else None,
                                          None, _mutable_collections(v) if train else False)
      box['spec'] = spec
      return spec.loss if spec.loss is not None else 0.0

    with summary_lib.collecting() as collector:
      jax.eval_shape(capture, variables, features, labels)
    return TracedSpec(box['spec'], box['aware'], not collector.empty)


def _summary_scope():
  """The steps collect summaries around `apply`; elsewhere (init, tracing the spec) a throwaway
  collector numbers the model_fn's `LoggingTensorHook`s the same way."""
  return contextlib.nullcontext() if summary_lib.active() else summary_lib.collecting()


def _mutable_collections(variables) -> list[str]:
  return [k for k in variables if k != 'params']

