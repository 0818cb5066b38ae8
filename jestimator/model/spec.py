"""`EstimatorSpec`: what a `model_fn` returns, validated per mode."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import optax

from jestimator.model import export_output as export_output_lib
from jestimator.model import train_ops
from jestimator.model.mode_keys import ModeKeys, check_mode

_SERVING_DEFAULT = 'serving_default'


@dataclasses.dataclass(frozen=True)
class EstimatorSpec:
  """Everything the Estimator needs from one call of a `model_fn`.

  Mirrors `tf.estimator.EstimatorSpec`. In TRAIN mode give exactly one of `optimizer` (an optax
  `GradientTransformation`: the Estimator differentiates `loss` and applies it, i.e.
  `train_ops.minimize(optimizer)`) and `train_op` (a `jestimator.train_ops.TrainOp`: several
  optimizers, alternating GAN updates, EMA weights, post-update constraints).

  Attributes:
    mode: one of `ModeKeys`.
    predictions: an array or a dict of arrays with a leading batch dimension (PREDICT).
    loss: a scalar (or shape `[1]`) loss; required in TRAIN and EVAL.
    optimizer: the optax transformation applied to the gradients of `loss` (TRAIN).
    train_op: a `jestimator.train_ops.TrainOp` run inside the compiled step instead (TRAIN).
    losses: `{name: scalar}` further losses a train op's sub-updates minimise by name.
    eval_metrics: `{name: metric state}` from `jestimator.metrics`, one batch's state (EVAL).
    export_outputs: `{signature_name: ExportOutput}`; PREDICT defaults to
      `{'serving_default': PredictOutput(predictions)}`.
    training_hooks / evaluation_hooks / prediction_hooks: `jestimator.hooks.Hook`s for that mode.
    string_outputs: `{output_key: (ids_key, vocabulary)}`: prediction outputs made on the host, since
      JAX holds no strings: `predictions[output_key] = vocabulary[predictions[ids_key]]`, as an
      object array of `bytes` (TF's `classes`). Also applied to export signatures and in serving.

  Example:
    def model_fn(features, labels, mode):
      logits = nn.Dense(1)(features['x'])[:, 0]
      if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={'logits': logits})
      loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
      return EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1),
                           eval_metrics={'loss_mean': metrics.mean(loss)})
  """

  mode: str
  predictions: Any = None
  loss: Any = None
  optimizer: optax.GradientTransformation | None = None
  train_op: Any = None
  losses: Mapping[str, Any] | None = None
  eval_metrics: Mapping[str, Any] | None = None
  export_outputs: Mapping[str, export_output_lib.ExportOutput] | None = None
  training_hooks: Sequence[Any] = ()
  evaluation_hooks: Sequence[Any] = ()
  prediction_hooks: Sequence[Any] = ()
  string_outputs: Mapping[str, tuple[str, Sequence[str]]] | None = None

  def __post_init__(self):
    check_mode(self.mode)
    set_ = lambda k, v: object.__setattr__(self, k, v)
    if self.mode in (ModeKeys.TRAIN, ModeKeys.EVAL) and self.loss is None:
      raise ValueError(f'EstimatorSpec in mode {self.mode!r} needs a loss; loss is None')
    if self.mode == ModeKeys.TRAIN and (self.optimizer is None) == (self.train_op is None):
      raise ValueError(
          "EstimatorSpec in mode 'train' needs exactly one of optimizer (an optax "
          "GradientTransformation, e.g. optax.adam(1e-3)) and train_op (a "
          "jestimator.train_ops.TrainOp); got " + ('both' if self.optimizer is not None else
                                                   'neither'))
    if self.mode == ModeKeys.PREDICT and self.predictions is None:
      raise ValueError("EstimatorSpec in mode 'infer' needs predictions; predictions is None")
    if self.loss is not None:
      set_('loss', _scalar_loss(self.loss))
    if self.optimizer is not None and not (
        hasattr(self.optimizer, 'init') and hasattr(self.optimizer, 'update')):
      raise TypeError('EstimatorSpec.optimizer must be an optax GradientTransformation, got '
                      f'{type(self.optimizer).__name__}')
    if self.train_op is not None:
      if train_ops.is_transformation(self.train_op):
        raise TypeError('EstimatorSpec.train_op got an optax GradientTransformation: pass it as '
                        'optimizer=, or train_op=jestimator.train_ops.minimize(tx)')
      if not (callable(getattr(self.train_op, 'init', None)) and
              callable(getattr(self.train_op, 'update', None))):
        raise TypeError('EstimatorSpec.train_op must be a jestimator.train_ops.TrainOp (with '
                        f'init(params) and update(ctx, params, state)), got '
                        f'{type(self.train_op).__name__}')
    if self.losses is not None:
      if not isinstance(self.losses, Mapping):
        raise TypeError('EstimatorSpec.losses must be a dict {name: scalar}, got '
                        f'{type(self.losses).__name__}')
      set_('losses', {str(k): _scalar_loss(v, f'losses[{k!r}]') for k, v in self.losses.items()})
    if self.eval_metrics is not None:
      if not isinstance(self.eval_metrics, Mapping):
        raise TypeError('EstimatorSpec.eval_metrics must be a dict {name: metric state}, got '
                        f'{type(self.eval_metrics).__name__}')
      for name in ('loss', 'global_step'):
        if name in self.eval_metrics:
          raise ValueError(f'eval_metrics may not use the reserved name {name!r} '
                           '(the Estimator adds it)')
      for name, m in self.eval_metrics.items():
        if not hasattr(m, 'merge') or not hasattr(m, 'result'):
          raise TypeError(f'eval_metrics[{name!r}] must be a jestimator.metrics state (with '
                          f'merge/result), got {type(m).__name__}')
    if self.export_outputs is not None:
      for name, out in self.export_outputs.items():
        if not isinstance(out, export_output_lib.ExportOutput):
          raise TypeError(f'export_outputs[{name!r}] must be an ExportOutput (Classification-, '
                          f'Regression- or PredictOutput), got {type(out).__name__}')
    elif self.mode == ModeKeys.PREDICT:
      set_('export_outputs', {_SERVING_DEFAULT: export_output_lib.PredictOutput(self.predictions)})
    if self.string_outputs is not None:
      for key, value in self.string_outputs.items():
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)):
          raise TypeError(f'string_outputs[{key!r}] must be (ids_key, vocabulary), got {value!r}')
      set_('string_outputs', {k: (i, tuple(str(w) for w in v))
                              for k, (i, v) in self.string_outputs.items()})
    for field in ('training_hooks', 'evaluation_hooks', 'prediction_hooks'):
      set_(field, tuple(getattr(self, field) or ()))

  def update_rule(self) -> Any:
    """The train op the step runs: `train_op`, or `train_ops.minimize(optimizer)`."""
    return self.train_op if self.train_op is not None else train_ops.minimize(self.optimizer)

  def _replace(self, **changes) -> 'EstimatorSpec':
    """A copy with `changes` applied (TF's namedtuple API); the mode cannot change."""
    if 'mode' in changes and changes['mode'] != self.mode:
      raise ValueError('EstimatorSpec._replace cannot change mode')
    return dataclasses.replace(self, **changes)


# TF's EstimatorSpec arguments that have another form here: a bare "unexpected keyword" would not
# say what to do instead.
_TF_ONLY_ARGUMENTS = {
    'eval_metric_ops': 'pass eval_metrics={name: metric state from jestimator.metrics}',
    'training_chief_hooks': 'pass training_hooks=',
    'scaffold': 'there is no graph to scaffold: initialise in the model_fn, or warm start with '
                'Estimator(warm_start_from=...)',
}
_dataclass_init = EstimatorSpec.__init__


@functools.wraps(_dataclass_init)
def _init(self, *args, **kwargs):
  for name, hint in _TF_ONLY_ARGUMENTS.items():
    if name in kwargs:
      raise TypeError(f'EstimatorSpec has no {name}= (a tf.estimator argument): {hint}')
  _dataclass_init(self, *args, **kwargs)


EstimatorSpec.__init__ = _init


def _scalar_loss(loss, what: str = 'loss'):
  shape = jnp.shape(loss)
  if shape not in ((), (1,)):
    raise ValueError(f'EstimatorSpec.{what} must be a scalar (shape [] or [1]), got shape {shape}; '
                     'reduce it, e.g. with jnp.mean')
  return jnp.reshape(loss, ())
