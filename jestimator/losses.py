"""`tf.compat.v1.losses` in pure jax.numpy: TF's values, gradients, reductions and shape checks.

Every function takes `(labels, predictions_or_logits, weights=1.0, ..., reduction=...)` as TF
does and returns a scalar (or, with `Reduction.NONE`, the weighted per-element losses). They are
pure and jit-able, meant for a custom `model_fn`:

    loss = jestimator.losses.mean_squared_error(labels, predictions)

What carries over from TF, deliberately:
- **Shape checks.** `labels` and predictions must have the same static shape (TF's
  `assert_is_compatible_with`): labels `[N, 1]` against predictions `[N]` raise a `ValueError`
  instead of broadcasting to an `[N, N]` loss. `sparse_softmax_cross_entropy` squeezes a trailing
  1 of `labels` / `weights` as TF does. `weights` must be a scalar or have the losses' rank with
  each dimension 1 or equal (TF's `assert_broadcastable`).
- **Reductions.** `Reduction.SUM_BY_NONZERO_WEIGHTS` (= `SUM_OVER_NONZERO_WEIGHTS`) is the
  default, as TF; divisions are `div_no_nan` (0 when nothing is present).
- **Gradients at ties** follow TF's op gradients, not JAX's defaults: `|x|` has gradient 0 at 0
  (TF's `sign`), the hinge's ReLU 0 at the kink, Huber's `minimum` routes the tie to the
  quadratic part, and the sigmoid cross-entropy has gradient `sigmoid(z) - y` at `z = 0`.
- `mean_pairwise_squared_error` returns TF's sum over the batch (it takes no `reduction`, as TF).
- An out-of-range class id in `sparse_softmax_cross_entropy` raises when the labels are concrete
  (TF's CPU kernel raises); under `jit` the example's loss is NaN (TF's GPU kernel), which the
  Estimator's NaN check then reports — never a silent 0.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['Reduction', 'absolute_difference', 'compute_weighted_loss', 'cosine_distance',
           'hinge_loss', 'huber_loss', 'log_loss', 'mean_pairwise_squared_error',
           'mean_squared_error', 'sigmoid_cross_entropy', 'softmax_cross_entropy',
           'sparse_softmax_cross_entropy']


class Reduction:
  """TF's `tf.compat.v1.losses.Reduction` keys (the same strings)."""
  NONE = 'none'
  SUM = 'weighted_sum'
  SUM_OVER_BATCH_SIZE = 'weighted_sum_over_batch_size'
  MEAN = 'weighted_mean'
  SUM_BY_NONZERO_WEIGHTS = 'weighted_sum_by_nonzero_weights'
  SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

  @classmethod
  def all(cls) -> tuple[str, ...]:
    """Every valid key."""
    return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE, cls.SUM_OVER_NONZERO_WEIGHTS,
            cls.SUM_BY_NONZERO_WEIGHTS)

  @classmethod
  def validate(cls, key: str) -> None:
    """Raises a ValueError naming the valid keys unless `key` is one."""
    if key not in cls.all():
      raise ValueError(f'Invalid Reduction Key {key!r}. Key should be one of {cls.all()}.')


def _f32(x: Any, name: str, fn: str) -> jax.Array:
  if x is None:
    raise ValueError(f'{fn}: argument `{name}` must not be None')
  return jnp.asarray(x, jnp.float32)


def _check_same_shape(a: jax.Array, b: jax.Array, a_name: str, b_name: str, fn: str) -> None:
  if a.shape != b.shape:
    raise ValueError(f'{fn}: {a_name} shape {a.shape} and {b_name} shape {b.shape} are '
                     'incompatible (TF requires equal shapes; reshape one, e.g. '
                     '`labels.reshape(predictions.shape)`, rather than letting them broadcast)')


def _check_weights(weights: jax.Array, losses: jax.Array, fn: str) -> None:
  """TF's `assert_broadcastable`: a scalar, or the same rank with each dim 1 or equal."""
  if weights.ndim == 0:
    return
  if weights.ndim != losses.ndim or any(w not in (1, l) for w, l in
                                        zip(weights.shape, losses.shape)):
    raise ValueError(f'{fn}: weights of shape {weights.shape} cannot be broadcast to the losses '
                     f'of shape {losses.shape} (TF: a scalar, or the same rank with each '
                     'dimension 1 or equal)')


def _abs(x: jax.Array) -> jax.Array:
  """|x| with TF's gradient `sign(x)` (0 at 0; `jnp.abs` gives 1 there)."""
  return x * jax.lax.stop_gradient(jnp.sign(x))


def _concrete_nonzero_scalar(x: Any) -> bool:
  """Whether `x` is a known (not traced) nonzero scalar: TF's eager `_num_present` shortcut."""
  return not isinstance(x, jax.core.Tracer) and np.ndim(x) == 0 and float(np.asarray(x)) != 0


def _div_no_nan(a: jax.Array, b: jax.Array) -> jax.Array:
  safe = jnp.where(b == 0, 1.0, b)
  return jnp.where(b == 0, 0.0, a / safe)


def compute_weighted_loss(losses: Any, weights: Any = 1.0,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
                          *, _fn: str = 'compute_weighted_loss') -> jax.Array:
  """`losses * weights` reduced as TF's `compute_weighted_loss` (see `Reduction`)."""
  Reduction.validate(reduction)
  losses = _f32(losses, 'losses', _fn)
  weights = _f32(weights, 'weights', _fn)
  _check_weights(weights, losses, _fn)
  weighted = losses * weights
  if reduction == Reduction.NONE:
    return weighted
  total = jnp.sum(weighted)
  if reduction == Reduction.SUM:
    return total
  if reduction == Reduction.MEAN:
    return _div_no_nan(total, jnp.sum(jnp.ones_like(losses) * weights))
  if reduction == Reduction.SUM_OVER_BATCH_SIZE:
    return _div_no_nan(total, jnp.float32(losses.size))
  present = jnp.broadcast_to(jnp.where(weights == 0, 0.0, 1.0), losses.shape)
  return _div_no_nan(total, jnp.sum(present))


def _pointwise(fn: str, labels: Any, predictions: Any, pred_name: str = 'predictions'):
  labels, predictions = _f32(labels, 'labels', fn), _f32(predictions, pred_name, fn)
  _check_same_shape(predictions, labels, pred_name, 'labels', fn)
  return labels, predictions


def absolute_difference(labels: Any, predictions: Any, weights: Any = 1.0,
                        reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `absolute_difference`: `|predictions - labels|` (gradient 0 where they are equal)."""
  labels, predictions = _pointwise('absolute_difference', labels, predictions)
  return compute_weighted_loss(_abs(predictions - labels), weights, reduction,
                               _fn='absolute_difference')


def mean_squared_error(labels: Any, predictions: Any, weights: Any = 1.0,
                       reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `mean_squared_error`: `(predictions - labels)**2`, reduced."""
  labels, predictions = _pointwise('mean_squared_error', labels, predictions)
  return compute_weighted_loss(jnp.square(predictions - labels), weights, reduction,
                               _fn='mean_squared_error')


def log_loss(labels: Any, predictions: Any, weights: Any = 1.0, epsilon: float = 1e-7,
             reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `log_loss` on probabilities: `-y log(p + eps) - (1 - y) log(1 - p + eps)`."""
  labels, p = _pointwise('log_loss', labels, predictions)
  losses = -labels * jnp.log(p + epsilon) - (1 - labels) * jnp.log(1 - p + epsilon)
  return compute_weighted_loss(losses, weights, reduction, _fn='log_loss')


def hinge_loss(labels: Any, logits: Any, weights: Any = 1.0,
               reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `hinge_loss` with 0/1 labels: `relu(1 - (2y - 1) * logits)` (gradient 0 at the kink)."""
  labels, logits = _pointwise('hinge_loss', labels, logits, 'logits')
  losses = jax.nn.relu(1.0 - (2.0 * labels - 1.0) * logits)
  return compute_weighted_loss(losses, weights, reduction, _fn='hinge_loss')


def huber_loss(labels: Any, predictions: Any, weights: Any = 1.0, delta: float = 1.0,
               reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `huber_loss`: quadratic within `delta`, linear outside."""
  labels, predictions = _pointwise('huber_loss', labels, predictions)
  abs_error = _abs(predictions - labels)
  # TF's `minimum` sends the gradient of a tie to its first argument; `jnp.minimum` splits it.
  quadratic = jnp.where(abs_error <= delta, abs_error, delta)
  linear = abs_error - quadratic
  losses = 0.5 * quadratic * quadratic + delta * linear
  return compute_weighted_loss(losses, weights, reduction, _fn='huber_loss')


def cosine_distance(labels: Any, predictions: Any, axis: int | None = None, weights: Any = 1.0,
                    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `cosine_distance` of unit-normalised inputs: `1 - sum(labels * predictions, axis)`."""
  if axis is None:
    raise ValueError('cosine_distance: you must specify argument `axis`')
  labels, predictions = _pointwise('cosine_distance', labels, predictions)
  losses = 1.0 - jnp.sum(predictions * labels, axis=(axis,), keepdims=True)
  return compute_weighted_loss(losses, weights, reduction, _fn='cosine_distance')


def sigmoid_cross_entropy_with_logits(labels: jax.Array, logits: jax.Array) -> jax.Array:
  """TF's `tf.nn.sigmoid_cross_entropy_with_logits`, elementwise (same shapes in and out).

  TF's stable `max(z, 0) - z * y + log1p(exp(-|z|))`, written with its `where`s so that the
  gradient at `z = 0` is `sigmoid(0) - y = 0.5 - y`: with `maximum`/`abs`, JAX's derivative rules
  at the tie give `-y`, and every zero-initialised model would take a wrong first step.
  """
  cond = logits >= 0
  relu_logits = jnp.where(cond, logits, 0.0)
  neg_abs_logits = jnp.where(cond, -logits, logits)
  return relu_logits - logits * labels + jnp.log1p(jnp.exp(neg_abs_logits))


def sigmoid_cross_entropy(multi_class_labels: Any, logits: Any, weights: Any = 1.0,
                          label_smoothing: float = 0.0,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `sigmoid_cross_entropy`; `label_smoothing` moves labels towards 0.5."""
  labels, logits = _pointwise('sigmoid_cross_entropy', multi_class_labels, logits, 'logits')
  if label_smoothing > 0:
    labels = labels * (1 - label_smoothing) + 0.5 * label_smoothing
  return compute_weighted_loss(sigmoid_cross_entropy_with_logits(labels, logits), weights, reduction,
                               _fn='sigmoid_cross_entropy')


def softmax_cross_entropy(onehot_labels: Any, logits: Any, weights: Any = 1.0,
                          label_smoothing: float = 0.0,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `softmax_cross_entropy` over the last axis; `label_smoothing` spreads
  `label_smoothing / num_classes` onto every class. No gradient flows into the labels (as TF)."""
  labels, logits = _pointwise('softmax_cross_entropy', onehot_labels, logits, 'logits')
  if label_smoothing > 0:
    labels = labels * (1.0 - label_smoothing) + label_smoothing / labels.shape[-1]
  labels = jax.lax.stop_gradient(labels)
  losses = -jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1)
  return compute_weighted_loss(losses, weights, reduction, _fn='softmax_cross_entropy')


def sparse_softmax_cross_entropy(labels: Any, logits: Any, weights: Any = 1.0,
                                 reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
  """TF's `sparse_softmax_cross_entropy`: integer class ids `[N]` (or `[N, 1]`, squeezed as TF)
  against logits `[N, num_classes]`."""
  fn = 'sparse_softmax_cross_entropy'
  if labels is None or logits is None:
    raise ValueError(f'{fn}: `labels` and `logits` must not be None')
  logits = jnp.asarray(logits, jnp.float32)
  concrete = None if isinstance(labels, jax.core.Tracer) else np.asarray(labels)
  labels = jnp.asarray(labels)
  if labels.ndim == logits.ndim:  # TF's remove_squeezable_dimensions(expected_rank_diff=1)
    if labels.shape[-1:] != (1,):
      raise ValueError(f'{fn}: labels shape {labels.shape} vs logits shape {logits.shape}: labels '
                       'must be class ids of shape logits.shape[:-1] (or with a trailing 1)')
    labels = labels[..., 0]
  if labels.shape != logits.shape[:-1]:
    raise ValueError(f'{fn}: labels shape {labels.shape} and logits shape {logits.shape} are '
                     'incompatible: labels must have shape logits.shape[:-1]')
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f'{fn}: labels must be integer class ids, got dtype {labels.dtype}')
  weights = jnp.asarray(weights, jnp.float32)
  if weights.ndim == labels.ndim + 1 and weights.ndim > 0:
    weights = weights[..., 0]
  num_classes = logits.shape[-1]
  if concrete is not None:
    bad = concrete.reshape(labels.shape)
    bad = bad[(bad < 0) | (bad >= num_classes)]
    if bad.size:
      raise ValueError(f'{fn}: label id {int(bad[0])} is outside [0, {num_classes}) (the '
                       'number of classes in logits)')
  in_range = (labels >= 0) & (labels < num_classes)
  safe = jnp.where(in_range, labels, 0)
  picked = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), safe[..., None], axis=-1)
  losses = jnp.where(in_range, -picked[..., 0], jnp.nan)
  return compute_weighted_loss(losses, weights, reduction, _fn=fn)


def mean_pairwise_squared_error(labels: Any, predictions: Any, weights: Any = 1.0) -> jax.Array:
  """TF's `mean_pairwise_squared_error`: per example, the mean of the squared differences of
  `predictions[i] - predictions[j]` vs `labels[i] - labels[j]` over its pairs, times its weight,
  summed over the batch (TF takes no `reduction` here)."""
  fn = 'mean_pairwise_squared_error'
  labels, predictions = _pointwise(fn, labels, predictions)
  scalar_nonzero = _concrete_nonzero_scalar(weights)
  weights = _f32(weights, 'weights', fn)
  _check_weights(weights, labels, fn)
  diffs = predictions - labels
  axis = tuple(range(1, diffs.ndim))
  if scalar_nonzero:
    # TF 2.x (eager) counts every element of the batch for a nonzero scalar weight, not the
    # example's own: pinned by TF 2.15's output (data/losses.json), kept for parity.
    num_present = jnp.float32(diffs.size)
  else:
    present = jnp.broadcast_to(jnp.where(weights == 0, 0.0, 1.0), diffs.shape)
    num_present = jnp.sum(present, axis=axis, keepdims=True)
  term1 = 2.0 * _div_no_nan(jnp.sum(jnp.square(diffs), axis=axis, keepdims=True),
                            jnp.maximum(num_present - 1, 0))
  term2 = 2.0 * _div_no_nan(jnp.square(jnp.sum(diffs, axis=axis, keepdims=True)),
                            jnp.maximum(num_present * (num_present - 1), 0))
  loss = jnp.sum((term1 - term2) * weights)
  return jnp.where(jnp.sum(num_present) > 0, loss, 0.0)
