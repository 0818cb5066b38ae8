"""Pure, jit-able train / eval / predict steps built from a `model_fn`.

The Estimator compiles these; they are public so a hand-written `jax.pmap`, `shard_map` or plain
`jax.jit` loop can reuse a model_fn (and its heads and feature columns) without the driver:

  model = jestimator.ModelFn(model_fn)
  train_step = jestimator.make_train_step(model, optax.sgd(0.1), axis_name='batch')
  p_train_step = jax.pmap(train_step, axis_name='batch')
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jestimator.model import metrics as metrics_lib
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.model_fn import ModelFn
from jestimator.state.train_state import TrainState

StepOutputs = dict[str, jax.Array]


@runtime_checkable
class HasCompiledModel(Protocol):
  """An `Estimator`: its `compiled_model.model` is the `ModelFn`."""

  @property
  def compiled_model(self) -> Any: ...


def _as_model_fn(model_fn_or_estimator) -> ModelFn:
  if isinstance(model_fn_or_estimator, ModelFn):
    return model_fn_or_estimator
  if isinstance(model_fn_or_estimator, HasCompiledModel):
    return model_fn_or_estimator.compiled_model.model
  return ModelFn(model_fn_or_estimator)


def make_train_step(model_fn_or_estimator, optimizer: optax.GradientTransformation | None = None,
                    axis_name: str | None = None
                    ) -> Callable[..., tuple[TrainState, StepOutputs]]:
  """`train_step(state, features, labels, mask=None) -> (state, {'loss': loss})`, pure.

  `mask` (optional, `[batch]` float32, 1.0 for real rows) is published to `example_mask()`, so a
  padding-aware loss can ignore the rows a short final batch was padded with.

  Args:
    model_fn_or_estimator: a model_fn, a `ModelFn` or an `Estimator`.
    optimizer: the optax transformation; None uses the `EstimatorSpec.optimizer` of the model_fn.
    axis_name: when the step runs under `jax.pmap`/`shard_map` over this axis: gradients, loss and
      mutable collections (BatchNorm statistics) are averaged over it, and each replica draws
      its own dropout key.
  """
  model = _as_model_fn(model_fn_or_estimator)

  def train_step(state: TrainState, features, labels, mask=None):
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
      rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
    mutable = list(state.collections) or False
    box = {}

    def loss_fn(params):
      spec, updated = model.apply({'params': params, **state.collections}, features, labels,
                                  ModeKeys.TRAIN, rng=rng, mask=mask, mutable=mutable)
      box['optimizer'] = spec.optimizer
      return spec.loss, updated

    (loss, updated), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
      grads, loss, updated = lax.pmean((grads, loss, updated), axis_name)
    opt = optimizer if optimizer is not None else box['optimizer']
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    collections = {**state.collections, **updated}
    new_state = state.replace(step=state.step + 1, params=params, collections=collections,
                              opt_state=opt_state)
    return new_state, {'loss': loss}

  return train_step


def make_train_loop(train_step: Callable) -> Callable:
  """K steps in one dispatch: `loop(state, features[K, B...], labels[K, B...], num_steps=None)`.

  Returns `(state, {'loss': the last step's loss, 'losses': [K]})`, like TPUEstimator's
  `iterations_per_loop`. Without `num_steps` all K steps run (`lax.scan`); with it (an int32
  scalar, `1 <= num_steps <= K`, traced so one program serves every count) only the first
  `num_steps` batches of the stack are trained on and `losses[num_steps:]` are 0.
  """

  def loop(state, features, labels, num_steps=None):
    if num_steps is None:
      def body(s, batch):
        s, out = train_step(s, *batch)
        return s, out['loss']

      state, losses = lax.scan(body, state, (features, labels))
      return state, {'loss': losses[-1], 'losses': losses}

    k = jax.tree.leaves((features, labels))[0].shape[0]
    take = lambda i, tree: jax.tree.map(lambda a: lax.dynamic_index_in_dim(a, i, 0, False), tree)

    def step_i(i, carry):
      s, losses = carry
      s, out = train_step(s, take(i, features), take(i, labels))
      return s, losses.at[i].set(out['loss'].astype(jnp.float32))

    state, losses = lax.fori_loop(0, num_steps, step_i, (state, jnp.zeros((k,), jnp.float32)))
    return state, {'loss': losses[num_steps - 1], 'losses': losses}

  return loop


def make_eval_step(model_fn_or_estimator, axis_name: str | None = None) -> Callable:
  """`eval_step(variables, features, labels, mask) -> {name: metric state}`, pure.

  The states are one batch's: `loss` (a `metrics.Mean` holding the batch loss with count 1, so
  merging gives TF's mean of per-batch losses) and the spec's `eval_metrics`. `mask` is the
  `[batch]` float32 mask of real rows (see `jestimator.padding`). Under `axis_name` the states are
  summed over replicas.
  """
  model = _as_model_fn(model_fn_or_estimator)

  def eval_step(variables, features, labels, mask):
    spec, _ = model.apply(variables, features, labels, ModeKeys.EVAL, mask=mask)
    loss = spec.loss
    count = jnp.ones((), jnp.float32)
    if axis_name is not None:
      # Each replica's loss covers its shard; weight by real rows so the global batch loss is exact.
      real = jnp.sum(mask)
      # A replica holding only padding may report 0/0 = NaN; it carries no weight, so drop it.
      loss = jnp.where(real > 0, loss, 0.0)
      loss = lax.psum(loss * real, axis_name) / jnp.maximum(lax.psum(real, axis_name), 1.0)
    states = {'loss': metrics_lib.Mean(total=loss.astype(jnp.float32), count=count)}
    states.update(spec.eval_metrics or {})
    if axis_name is not None:
      metric_states = {k: v for k, v in states.items() if k != 'loss'}
      states.update(lax.psum(metric_states, axis_name))
    return states

  return eval_step


def make_predict_step(model_fn_or_estimator) -> Callable:
  """`predict_step(variables, features, mask) -> predictions` (a dict or an array), pure."""
  model = _as_model_fn(model_fn_or_estimator)

  def predict_step(variables, features, mask):
    spec, _ = model.apply(variables, features, None, ModeKeys.PREDICT, mask=mask)
    return spec.predictions

  return predict_step


def merge_states(acc, batch):
  """Merges two `{name: metric state}` dicts (the accumulator and one batch)."""
  return {k: acc[k].merge(v) for k, v in batch.items()}
