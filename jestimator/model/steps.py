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
from jax import lax

from jestimator.model import metrics as metrics_lib
from jestimator.model import summary as summary_lib
from jestimator.model import train_ops
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


def make_train_step(model_fn_or_estimator, optimizer: Any = None,
                    axis_name: str | None = None, with_outputs: bool = False,
                    outputs_switch: bool = False, packing: summary_lib.Packing | None = None
                    ) -> Callable[..., tuple[TrainState, StepOutputs]]:
  """`train_step(state, features, labels, mask=None) -> (state, outputs)`, pure.

  `outputs` holds `loss`, `losses` (`[1]`, as a `make_train_loop` dispatch's `[K]`),
  `nonfinite` (True when the loss is NaN or infinite; computed on the device, so checking it
  costs no sync until it is fetched) and `update_losses` (`{name: loss}` of a train op's
  sub-updates, see `train_ops.alternate`; {} for a plain optimizer). With
  `with_outputs`, also `summaries`: `{'scalars', 'histograms', 'tensors'}` of the model_fn's
  `jestimator.summary` calls and `LoggingTensorHook` tensors (left out otherwise, so XLA drops
  their computation).

  `mask` (optional, `[batch]` float32, 1.0 for real rows) is published to `example_mask()`, so a
  padding-aware loss can ignore the rows a short final batch was padded with.

  Args:
    model_fn_or_estimator: a model_fn, a `ModelFn` or an `Estimator`.
    optimizer: an optax transformation (`train_ops.minimize` of it) or a `train_ops.TrainOp`;
      None runs the `EstimatorSpec`'s (`train_op`, or `optimizer`).
    axis_name: when the step runs under `jax.pmap`/`shard_map` over this axis: gradients, loss and
      mutable collections (BatchNorm statistics) are averaged over it, and each replica draws
      its own dropout key.
    with_outputs: also return the summaries and hook tensors.
    outputs_switch: `train_step(state, features, labels, mask, want_outputs)`: `summaries`
      always returned, computed (by the forward pass run again, under `lax.cond`) when the
      traced bool `want_outputs` is true and zeros otherwise: one program for the steps with and
      without them. Implies `with_outputs`.
    packing: with `with_outputs`: the summary scalars and histograms leave the step as one
      float32 vector, `summaries = {'packed': vector, 'tensors': {...}}`; `packing.unpack`
      turns the fetched vector back into `{'scalars', 'histograms'}`.
  """
  model = _as_model_fn(model_fn_or_estimator)
  if train_ops.is_transformation(optimizer):
    optimizer = train_ops.minimize(optimizer)
  with_outputs = with_outputs or outputs_switch

  def train_step(state: TrainState, features, labels, mask=None, want_outputs=None):
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
      rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
    mutable = list(state.collections) or False
    box = {}

    def run_model(variables, key):
      with summary_lib.collecting() as collector:
        spec, updated = model.apply(variables, features, labels, ModeKeys.TRAIN, rng=key,
                                    mask=mask, mutable=mutable)
      return spec, updated, collector.raw()

    def forward(variables, key):
      spec, updated, raw = run_model(variables, key)
      box.setdefault('spec', spec)
      box.setdefault('raw', jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype),
                                         raw))
      # Collected values leave the gradient trace as aux, never as closed-over tracers.
      return (spec, updated), (raw if with_outputs and not outputs_switch else None)

    ctx = train_ops.StepContext(forward, state.step, rng, state.collections, axis_name)
    if optimizer is not None:
      params, opt_state = optimizer.update(ctx, state.params, state.opt_state)
    else:
      # The spec's rule is known once the model_fn ran. Its first pass is minimize's: with
      # optimizer= it goes on from there (tracing the model_fn once, as before train ops); a
      # train_op starts over from a fresh context and XLA drops the unused pass.
      fresh = ctx.snapshot()
      value, grads = ctx.loss_and_grad(state.params)
      spec = box['spec']
      if spec.train_op is None:
        params, opt_state = train_ops.minimize(spec.optimizer).apply(
            ctx, state.params, state.opt_state, value, grads)
      else:
        ctx.restore(fresh)
        params, opt_state = spec.train_op.update(ctx, state.params, state.opt_state)
    loss, collections, update_losses, collected = ctx.finish()
    new_state = state.replace(step=state.step + 1, params=params, collections=collections,
                              opt_state=opt_state)
    outputs = {'loss': loss, 'losses': jnp.reshape(loss, (1,)),
               'nonfinite': jnp.logical_not(jnp.isfinite(loss)),
               'update_losses': update_losses}
    if with_outputs:
      if outputs_switch:
        # The summaries come from the forward pass run again under a runtime condition: its
        # operands are the step's inputs, so a step that writes none runs the lean program's
        # work (taking the activations out of the gradient pass instead would materialise and
        # copy them every step, ~15% of a canned DNN's step on a CPU).
        shapes = jax.eval_shape(summary_lib.outputs_of, box['raw'])
        collected = lax.cond(want_outputs,
                             lambda p: summary_lib.outputs_of(
                                 run_model({'params': p, **state.collections}, rng)[2]),
                             lambda p: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes),
                             state.params)
      else:
        collected = summary_lib.outputs_of(collected)
      collected = _reduce_outputs(collected, axis_name)
      if packing is not None:
        collected = {'packed': packing.pack(collected), 'tensors': collected['tensors']}
      outputs['summaries'] = collected
    return new_state, outputs

  return train_step


def _reduce_outputs(collected, axis_name: str | None):
  """Collected outputs made identical on every replica: scalars averaged, histograms merged,
  tensors with a batch axis gathered in replica order."""
  if axis_name is None:
    return collected
  tensors = {k: lax.pmean(v, axis_name) if jnp.ndim(v) == 0 else
             lax.all_gather(v, axis_name, tiled=True) for k, v in collected['tensors'].items()}
  return {'scalars': lax.pmean(collected['scalars'], axis_name),
          'histograms': {k: h.reduce_replicas(axis_name)
                         for k, h in collected['histograms'].items()},
          'tensors': tensors}


def make_train_loop(train_step: Callable, last_step: Callable | None = None) -> Callable:
  """K steps in one dispatch: `loop(state, features[K, B...], labels[K, B...], num_steps=None)`.

  Returns `(state, {'loss': the last step's loss, 'losses': [K], 'nonfinite': [K] bool,
  'update_losses': the last step's, ...})`,
  like TPUEstimator's `iterations_per_loop`. Without `num_steps` all K steps run (`lax.scan`);
  with it (an int32 scalar, `1 <= num_steps <= K`, traced so one program serves every count)
  only the first `num_steps` batches of the stack are trained on, and `losses[num_steps:]` are 0
  and `nonfinite[num_steps:]` False. With `last_step` (a `with_outputs` train step), the last
  step trained runs it and its `summaries` are returned too.
  """

  def loop(state, features, labels, num_steps=None):
    if num_steps is None:
      def body(s, batch):
        s, out = train_step(s, *batch)
        return s, (out['loss'], out['nonfinite'], out['update_losses'])

      if last_step is None:
        state, (losses, nonfinite, sub) = lax.scan(body, state, (features, labels))
        return state, {'loss': losses[-1], 'losses': losses, 'nonfinite': nonfinite,
                       'update_losses': jax.tree.map(lambda a: a[-1], sub)}
      head = jax.tree.map(lambda a: a[:-1], (features, labels))
      state, (losses, nonfinite, _) = lax.scan(body, state, head)
      state, out = last_step(state, *jax.tree.map(lambda a: a[-1], (features, labels)))
      out = dict(out, losses=jnp.append(losses, out['loss']),
                 nonfinite=jnp.append(nonfinite, out['nonfinite']))
      return state, out

    k = jax.tree.leaves((features, labels))[0].shape[0]
    take = lambda i, tree: jax.tree.map(lambda a: lax.dynamic_index_in_dim(a, i, 0, False), tree)
    # The sub-update losses' structure (a train op's names), for the loop's carry; traced only.
    sub_shape = jax.eval_shape(lambda s, f, l: train_step(s, f, l)[1]['update_losses'],
                               state, take(0, features), take(0, labels))
    sub0 = jax.tree.map(lambda a: jnp.full(a.shape, jnp.nan, a.dtype), sub_shape)

    def step_i(i, carry):
      s, losses, nonfinite, _ = carry
      s, out = train_step(s, take(i, features), take(i, labels))
      return (s, losses.at[i].set(out['loss'].astype(jnp.float32)),
              nonfinite.at[i].set(out['nonfinite']), out['update_losses'])

    plain = num_steps if last_step is None else num_steps - 1
    carry = (state, jnp.zeros((k,), jnp.float32), jnp.zeros((k,), bool), sub0)
    state, losses, nonfinite, sub = lax.fori_loop(0, plain, step_i, carry)
    if last_step is None:
      return state, {'loss': losses[num_steps - 1], 'losses': losses, 'nonfinite': nonfinite,
                     'update_losses': sub}
    last = num_steps - 1
    state, out = last_step(state, take(last, features), take(last, labels))
    out = dict(out, losses=losses.at[last].set(out['loss'].astype(jnp.float32)),
               nonfinite=nonfinite.at[last].set(out['nonfinite']))
    return state, out

  return loop


def make_model_train_loop(model_fn_or_estimator, axis_name: str | None = None,
                          with_outputs: bool = False) -> Callable:
  """`make_train_loop` of the model's train step; `with_outputs`: the last step's summaries too."""
  last = (make_train_step(model_fn_or_estimator, axis_name=axis_name, with_outputs=True)
          if with_outputs else None)
  return make_train_loop(make_train_step(model_fn_or_estimator, axis_name=axis_name), last)


def make_eval_step(model_fn_or_estimator, axis_name: str | None = None,
                   with_outputs: bool = False) -> Callable:
  """`eval_step(variables, features, labels, mask) -> {name: metric state}`, pure.

  The states are one batch's: `loss` (a `metrics.Mean` holding the batch loss with count 1, so
  merging gives TF's mean of per-batch losses), the spec's `eval_metrics`, and, when the
  model_fn writes summaries, under `summary.EVAL_KEY` a dict of their states (a `Mean` per
  scalar, a `Histogram` per histogram; `merge_states` merges it too). `mask` is the `[batch]` float32 mask of real rows (see
  `jestimator.padding`). Under `axis_name` the states are summed over replicas.

  With `with_outputs` it returns `(states, outputs)`: the batch's `loss`, summary scalars and
  `LoggingTensorHook` tensors (`{'loss', 'summaries': {...}}`) for hooks to fetch.
  """
  model = _as_model_fn(model_fn_or_estimator)

  def eval_step(variables, features, labels, mask):
    with summary_lib.collecting() as collector:
      spec, _ = model.apply(variables, features, labels, ModeKeys.EVAL, mask=mask)
    metrics = dict(spec.eval_metrics or {})
    if summary_lib.EVAL_KEY in metrics:
      raise ValueError(f'eval_metrics may not use the name {summary_lib.EVAL_KEY!r}: it holds the '
                       'jestimator.summary values of the evaluation')
    collected = collector.outputs()
    loss = spec.loss
    count = jnp.ones((), jnp.float32)
    if axis_name is not None:
      # Each replica's loss covers its shard; weight by real rows so the global batch loss is exact.
      loss = _replica_mean(loss, mask, axis_name)
      collected = dict(collected, scalars={k: _replica_mean(v, mask, axis_name)
                                           for k, v in collected['scalars'].items()})
      collected = _reduce_outputs(collected, axis_name)
    states = {'loss': metrics_lib.Mean(total=loss.astype(jnp.float32), count=count)}
    if axis_name is not None:
      metrics = lax.psum(metrics, axis_name)
    states.update(metrics)
    summaries = summary_lib.eval_states(collected)
    if summaries:  # only then: hand-written loops over summary-free model_fns see flat states
      states[summary_lib.EVAL_KEY] = summaries
    if with_outputs:
      return states, {'loss': loss, 'summaries': collected}
    return states

  return eval_step


def _replica_mean(value, mask, axis_name: str):
  """The mean over replicas of a per-replica batch value, weighted by each one's real rows."""
  real = jnp.sum(mask)
  # A replica holding only padding may report 0/0 = NaN; it carries no weight, so drop it.
  value = jnp.where(real > 0, value, 0.0)
  return lax.psum(value * real, axis_name) / jnp.maximum(lax.psum(real, axis_name), 1.0)


def make_accumulate_step(model_fn_or_estimator, axis_name: str | None = None) -> Callable:
  """`(variables, acc, features, labels, mask) -> (acc merged with the batch, outputs)`, pure.

  What the strategies compile for evaluation; `outputs` as `make_eval_step(with_outputs=True)`.
  """
  step = make_eval_step(model_fn_or_estimator, axis_name, with_outputs=True)

  def accumulate(variables, acc, features, labels, mask):
    states, outputs = step(variables, features, labels, mask)
    return merge_states(acc, states), outputs

  return accumulate


def make_predict_step(model_fn_or_estimator, with_outputs: bool = False) -> Callable:
  """`predict_step(variables, features, mask) -> predictions` (a dict or an array), pure.

  With `with_outputs` it returns `(predictions, {'summaries': {...}})` with the
  `LoggingTensorHook` tensors of the model_fn, for hooks to fetch.
  """
  model = _as_model_fn(model_fn_or_estimator)

  def predict_step(variables, features, mask):
    with summary_lib.collecting() as collector:
      spec, _ = model.apply(variables, features, None, ModeKeys.PREDICT, mask=mask)
    if with_outputs:
      # Histograms mean nothing per prediction batch: only scalars and hook tensors.
      scalars = summary_lib.outputs_of(collector.raw())['scalars']  # histograms: dropped by XLA
      return spec.predictions, {'summaries': {'scalars': scalars, 'histograms': {},
                                              'tensors': dict(collector.tensors)}}
    return spec.predictions

  return predict_step


def merge_states(acc, batch):
  """Merges two `{name: metric state}` dicts (the accumulator and one batch); nested dicts of
  states (the summaries) merge leaf by leaf."""
  return jax.tree.map(metrics_lib.merge, acc, batch, is_leaf=metrics_lib.is_metric)
