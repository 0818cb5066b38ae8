"""Streaming evaluation metrics: pytrees of weighted sums, merged over batches.

A metric function called inside a `model_fn` returns the *state of one batch*: a small pytree of
float32 sums (a `Metric`). The compiled eval step returns these states, the Estimator folds them
over all batches with `merge` (an elementwise sum, also compiled) and finally reports `result()`.
Because a state holds sums, never ratios, merging batch states gives exactly the metric of the
concatenated data, whatever the batch sizes.

  def model_fn(features, labels, mode):
    logits = nn.Dense(1)(features['x'])[:, 0]
    probs = jax.nn.sigmoid(logits)
    ...
    return EstimatorSpec(mode, loss=loss, eval_metrics={
        'auc': metrics.auc(labels, probs),
        'accuracy': metrics.accuracy(labels, (probs > 0.5).astype(labels.dtype))})

  # What the Estimator does with them, in effect:
  total = None
  for batch in eval_batches:
    states = eval_step(train_state, batch)      # jit: {'auc': AUC(...), 'accuracy': Mean(...)}
    total = states if total is None else jax.tree.map(merge, total, states, is_leaf=is_metric)
  metrics.compute(total)                        # {'auc': 0.93, 'accuracy': 0.88}

Every function takes optional `weights` (None, a scalar, or an array broadcastable to the values;
an array of lower rank is aligned with the *leading* axes, so `[batch]` weights apply per example
to `[batch, k]` values). Inside an Estimator step the padding mask of the batch
(`jestimator.padding.current_mask()`, `[batch]`) multiplies the weights too, so padded rows never
count. Definitions and names follow `tf.keras.metrics`, which the TF v2 heads use.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jestimator.model import padding
from jestimator.model.metric_states import (AUC, CURVES, SUMMATION_METHODS, Mean, Metric,
                                            Precision, Recall, RootMeanSquaredError,
                                            evenly_spaced_thresholds, is_metric, merge)

logger = logging.getLogger('jestimator')

__all__ = [
    'Metric', 'Mean', 'RootMeanSquaredError', 'Precision', 'Recall', 'AUC', 'mean', 'accuracy',
    'accuracy_at_threshold', 'precision', 'recall', 'precision_at_thresholds',
    'recall_at_thresholds', 'auc', 'auc_thresholds', 'logit_thresholds', 'quantile_thresholds',
    'mean_squared_error', 'mean_absolute_error',
    'root_mean_squared_error', 'compute', 'is_metric', 'merge',
]



# ----------------------------------------------------------------------------------------------
# Input handling shared by the metric functions.

def _f32(x, name: str) -> jax.Array:
  try:
    return jnp.asarray(x, jnp.float32)
  except TypeError as e:
    raise TypeError(f'{name} must be numeric (an array, number or bool), got '
                    f'{type(x).__name__}: {e}') from None


def _check_same_shape(labels, predictions, fn: str) -> None:
  if jnp.shape(labels) != jnp.shape(predictions):
    raise ValueError(f'{fn}: labels and predictions must have the same shape, got labels of shape '
                     f'{tuple(jnp.shape(labels))} and predictions of shape '
                     f'{tuple(jnp.shape(predictions))}')


def _weights(shape: tuple[int, ...], weights, fn: str) -> jax.Array:
  """float32 weights broadcast to `shape`, times the padding mask of the current step."""
  shape = tuple(shape)
  if weights is None:
    w = jnp.ones(shape, jnp.float32)
  else:
    w = _f32(weights, f'{fn}: weights')
    if w.ndim == len(shape) + 1 and w.shape[-1] == 1:
      w = w[..., 0]  # [batch, 1] weights for [batch] values, as Keras squeezes them.
    elif 0 < w.ndim < len(shape):
      w = w.reshape(w.shape + (1,) * (len(shape) - w.ndim))  # align with the leading axes
    try:
      w = jnp.broadcast_to(w, shape)
    except ValueError:
      raise ValueError(f'{fn}: weights of shape {tuple(jnp.shape(weights))} cannot be broadcast '
                       f'to the values of shape {shape}') from None
  mask = padding.current_mask()
  if mask is None:
    return w
  mask = jnp.asarray(mask, jnp.float32)
  if not shape:
    # A scalar (say a batch's loss) is one observation per batch; a batch that is all padding
    # (a host that ran out of data) must not count.
    return w * (jnp.sum(mask) > 0).astype(jnp.float32)
  if shape[0] != mask.shape[0]:
    raise ValueError(f'{fn}: the values (shape {shape}) must have the batch on their leading axis '
                     f'to apply the padding mask of shape {tuple(mask.shape)}')
  return w * mask.reshape(mask.shape + (1,) * (len(shape) - 1))


def _error(labels, predictions, fn: str) -> jax.Array:
  _check_same_shape(labels, predictions, fn)
  return _f32(labels, f'{fn}: labels') - _f32(predictions, f'{fn}: predictions')


def _mean_of(values, weights, fn: str, cls=Mean) -> Mean:
  values = _f32(values, f'{fn}: values')
  w = _weights(values.shape, weights, fn)
  return cls(total=jnp.sum(values * w), count=jnp.sum(w))


def _static_thresholds(thresholds, fn: str) -> np.ndarray:
  try:
    t = np.asarray(thresholds, np.float32)
  except (TypeError, jax.errors.TracerArrayConversionError):
    raise TypeError(f'{fn}: thresholds must be concrete numbers (a float or a list of floats), '
                    f'got {type(thresholds).__name__}') from None
  if t.ndim > 1 or t.size == 0:
    raise ValueError(f'{fn}: thresholds must be a non-empty list of floats, got shape {t.shape}')
  return t.reshape(-1)


def _at_thresholds(labels, predictions, weights, thresholds: np.ndarray, fn: str):
  """Weighted (tp, fp, tn, fn), each `[T]`, of `predictions > thresholds[t]` vs `labels != 0`."""
  _check_same_shape(labels, predictions, fn)
  preds = _f32(predictions, f'{fn}: predictions').reshape(-1)
  w = _weights(jnp.shape(predictions), weights, fn).reshape(-1)
  pos = jnp.asarray(labels).reshape(-1) != 0
  wp = jnp.where(pos, w, 0.0)[:, None]
  wn = jnp.where(pos, 0.0, w)[:, None]
  # One [N, T] comparison; XLA fuses the four masked reductions into a single pass. Sums of
  # selected weights (not a matmul) keep full float32 precision on every backend.
  above = preds[:, None] > jnp.asarray(thresholds)[None, :]
  tp = jnp.sum(jnp.where(above, wp, 0.0), axis=0)
  fp = jnp.sum(jnp.where(above, wn, 0.0), axis=0)
  tn = jnp.sum(jnp.where(above, 0.0, wn), axis=0)
  fn_ = jnp.sum(jnp.where(above, 0.0, wp), axis=0)
  return tp, fp, tn, fn_


# ----------------------------------------------------------------------------------------------
# Metric functions: each returns one batch's state.

def mean(values, weights=None) -> Mean:
  """Weighted mean of `values` (any shape; every element counts, weighted by broadcast `weights`).

  Example: `mean(jnp.array([1., 3.]), weights=jnp.array([1., 3.])).result()` is 2.5.
  """
  return _mean_of(values, weights, 'mean')


def accuracy(labels, predictions, weights=None) -> Mean:
  """Weighted fraction of elements where `labels == predictions` (e.g. class ids).

  Args:
    labels, predictions: arrays of the same shape, `[batch]` or `[batch, k]`, compared as given.
    weights: None or broadcastable to the labels.
  """
  _check_same_shape(labels, predictions, 'accuracy')
  return _mean_of(jnp.asarray(labels) == jnp.asarray(predictions), weights, 'accuracy')


def accuracy_at_threshold(labels, predictions, threshold: float, weights=None) -> Mean:
  """Binary accuracy: weighted fraction where `labels == (predictions > threshold)`.

  Like `tf.keras.metrics.BinaryAccuracy(threshold=threshold)`: labels are {0, 1} (or bool),
  predictions are scores such as probabilities, both `[batch]` or `[batch, k]`.
  """
  _check_same_shape(labels, predictions, 'accuracy_at_threshold')
  t = _static_thresholds(threshold, 'accuracy_at_threshold')
  if t.size != 1:
    raise ValueError(f'accuracy_at_threshold: threshold must be one float, got {threshold!r}')
  t = float(t[0])
  hit = _f32(labels, 'accuracy_at_threshold: labels') == (
      _f32(predictions, 'accuracy_at_threshold: predictions') > t).astype(jnp.float32)
  return _mean_of(hit, weights, 'accuracy_at_threshold')


def precision(labels, predictions, weights=None) -> Precision:
  """Weighted precision of binary predictions.

  Args:
    labels, predictions: bool or {0, 1} arrays of the same shape, `[batch]` or `[batch, k]`.
      A label counts as positive when non-zero; a prediction when `> 0.5` (so {0, 1} and bool
      work, and probabilities get Keras' default threshold).
    weights: None or broadcastable to the labels.
  """
  tp, fp, _, _ = _at_thresholds(labels, predictions, weights, np.float32([0.5]), 'precision')
  return Precision(true_positives=tp[0], false_positives=fp[0])


def recall(labels, predictions, weights=None) -> Recall:
  """Weighted recall of binary predictions (same conventions as `precision`)."""
  tp, _, _, fn = _at_thresholds(labels, predictions, weights, np.float32([0.5]), 'recall')
  return Recall(true_positives=tp[0], false_negatives=fn[0])


def precision_at_thresholds(labels, predictions, thresholds: Sequence[float],
                            weights=None) -> Precision:
  """Precision at each threshold; `result()` is `[len(thresholds)]`.

  Args:
    labels: `[batch]` or `[batch, k]`, positive where non-zero.
    predictions: scores of the same shape; `prediction > t` counts as positive (as TF).
    thresholds: a float or a list of floats (static).
    weights: None or broadcastable to the labels.
  """
  t = _static_thresholds(thresholds, 'precision_at_thresholds')
  tp, fp, _, _ = _at_thresholds(labels, predictions, weights, t, 'precision_at_thresholds')
  return Precision(true_positives=tp, false_positives=fp, thresholds=tuple(t.tolist()))


def recall_at_thresholds(labels, predictions, thresholds: Sequence[float],
                         weights=None) -> Recall:
  """Recall at each threshold; `result()` is `[len(thresholds)]` (see `precision_at_thresholds`)."""
  t = _static_thresholds(thresholds, 'recall_at_thresholds')
  tp, _, _, fn = _at_thresholds(labels, predictions, weights, t, 'recall_at_thresholds')
  return Recall(true_positives=tp, false_negatives=fn, thresholds=tuple(t.tolist()))


def auc_thresholds(num_thresholds: int) -> np.ndarray:
  """The `[num_thresholds]` float32 thresholds of `tf.keras.metrics.AUC`.

  `[-1e-7] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)] + [1 + 1e-7]`.
  """
  return evenly_spaced_thresholds(num_thresholds)


def logit_thresholds(num_thresholds: int = 200, max_logit: float = 16.0) -> np.ndarray:
  """`num_thresholds - 2` inner thresholds evenly spaced in logit: `sigmoid(linspace(-m, m))`.

  For `auc(..., thresholds=...)`: as fine near 1e-6 or 1 - 1e-6 as near 0.5 in relative terms, so
  the AUC of a rare-event (CTR-like) model whose scores sit in [0, 0.001] is close to the exact
  one, where TF's evenly spaced thresholds put all of them in one interval (AUC 0.5). The
  default `max_logit=16` reaches probabilities of 1e-7.
  """
  if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or (
      num_thresholds < 3):
    raise ValueError(f'logit_thresholds: num_thresholds must be an integer >= 3, got '
                     f'{num_thresholds!r}')
  if not max_logit > 0:
    raise ValueError(f'logit_thresholds: max_logit must be positive, got {max_logit!r}')
  logits = np.linspace(-float(max_logit), float(max_logit), int(num_thresholds) - 2)
  return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def quantile_thresholds(scores, num_thresholds: int = 200) -> np.ndarray:
  """Inner thresholds at the quantiles of `scores` (say predictions on a sample of the data).

  numpy's linear-interpolation quantiles at `num_thresholds - 2` evenly spaced levels, clipped to
  [0, 1], duplicates merged (as `jestimator.columns.analyze` makes bucket boundaries). With
  thresholds that follow the data every interval holds about as many predictions, whatever
  their range. For `auc(..., thresholds=...)`.
  """
  if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or (
      num_thresholds < 3):
    raise ValueError(f'quantile_thresholds: num_thresholds must be an integer >= 3, got '
                     f'{num_thresholds!r}')
  values = np.asarray(scores, np.float64).reshape(-1)
  values = values[np.isfinite(values)]
  if values.size == 0:
    raise ValueError('quantile_thresholds: scores hold no finite value')
  levels = np.linspace(0.0, 1.0, int(num_thresholds) - 2)
  return np.unique(np.clip(np.quantile(values, levels), 0.0, 1.0).astype(np.float32))


def check_inner_thresholds(thresholds, fn: str = 'auc') -> tuple[float, ...]:
  """Explicit AUC thresholds as a sorted tuple of distinct floats in [0, 1] (ValueError else)."""
  t = _static_thresholds(thresholds, fn)
  bad = t[~((t >= 0.0) & (t <= 1.0))]
  if bad.size:
    raise ValueError(f'{fn}: thresholds must lie in [0, 1], got {bad[:10].tolist()}')
  return tuple(float(v) for v in np.unique(t))


def auc(labels, predictions, weights=None, num_thresholds: int = 200, curve: str = 'ROC',
        summation_method: str = 'interpolation', thresholds=None) -> AUC:
  """Approximate area under the ROC or precision-recall curve, as `tf.keras.metrics.AUC`.

  The curve has a point per threshold, so the thresholds decide the accuracy: TF's default (200
  evenly spaced in [0, 1], kept here for comparability) is badly wrong when most scores fall in
  one interval, the normal case for rare-event models (scores in [0, 0.001]: AUC 0.5). `compute`
  warns then. Thresholds that follow the data fix it: `logit_thresholds()` (no data needed) or
  `quantile_thresholds(sample_of_scores)`.

  Args:
    labels: `[batch]` or `[batch, k]`, positive where non-zero; every element is one example.
    predictions: probabilities in [0, 1], same shape as `labels`.
    weights: None or broadcastable to the labels.
    num_thresholds: number of evenly spaced thresholds (>= 2), see `auc_thresholds`.
    curve: 'ROC' or 'PR'.
    summation_method: 'interpolation' (trapezoids for ROC; Davis & Goadrich for PR), 'minoring'
      (lower Riemann sum) or 'majoring' (upper Riemann sum).
    thresholds: instead of `num_thresholds`, explicit inner thresholds in [0, 1] (as Keras'
      `thresholds=`); `[-1e-7]` and `[1 + 1e-7]` are added around them.

  Returns:
    An `AUC` state with `[num_thresholds]` confusion counts.
  """
  if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or (
      num_thresholds < 2):
    raise ValueError(f'auc: num_thresholds must be an integer >= 2, got {num_thresholds!r}')
  curve_norm = str(curve).upper()
  if curve_norm not in CURVES:
    raise ValueError(f'auc: unknown curve {curve!r}; expected one of {list(CURVES)}')
  method = str(summation_method).lower()
  if method not in SUMMATION_METHODS:
    raise ValueError(f'auc: unknown summation_method {summation_method!r}; expected one of '
                     f'{list(SUMMATION_METHODS)}')
  inner = ()
  if thresholds is not None:
    if num_thresholds != 200:
      raise ValueError(f'auc: give num_thresholds ({num_thresholds}) or thresholds, not both')
    inner = check_inner_thresholds(thresholds)
    num_thresholds = len(inner) + 2
  state = AUC(true_positives=None, false_positives=None, true_negatives=None,
              false_negatives=None, num_thresholds=int(num_thresholds), curve=curve_norm,
              summation_method=method, thresholds=inner)
  tp, fp, tn, fn = _at_thresholds(labels, predictions, weights, state.threshold_values(), 'auc')
  return state.replace(true_positives=tp, false_positives=fp, true_negatives=tn,
                       false_negatives=fn)


def mean_squared_error(labels, predictions, weights=None) -> Mean:
  """Weighted mean of `(labels - predictions) ** 2` over all elements (same shapes required)."""
  err = _error(labels, predictions, 'mean_squared_error')
  return _mean_of(err * err, weights, 'mean_squared_error')


def mean_absolute_error(labels, predictions, weights=None) -> Mean:
  """Weighted mean of `|labels - predictions|` over all elements (same shapes required)."""
  err = _error(labels, predictions, 'mean_absolute_error')
  return _mean_of(jnp.abs(err), weights, 'mean_absolute_error')


def root_mean_squared_error(labels, predictions, weights=None) -> RootMeanSquaredError:
  """`sqrt` of the weighted mean squared error (sums are merged, the root taken at the end)."""
  err = _error(labels, predictions, 'root_mean_squared_error')
  return _mean_of(err * err, weights, 'root_mean_squared_error', RootMeanSquaredError)


def compute(metrics: Mapping[str, Metric]) -> dict[str, float | np.ndarray]:
  """Host values of merged states: a Python float for scalar results, numpy for vectors.

  Logs a warning for an `AUC` whose predictions mostly (over half their weight) fell between two
  adjacent thresholds: its value is then far from the exact AUC.
  """
  for name, m in metrics.items():
    if not isinstance(m, Metric):
      raise TypeError(f'compute: metrics[{name!r}] must be a jestimator.metrics state, got '
                      f'{type(m).__name__}')
  metrics = jax.device_get(dict(metrics))
  try:
    # One program for every result: op by op, each jnp op of every result() would be a
    # compilation of its own (19 for a canned head's metrics, half a cold first evaluate()).
    values = jax.device_get(_results(metrics))
  except jax.errors.JAXTypeError:  # a user's Metric whose result() needs concrete values
    values = {name: m.result() for name, m in metrics.items()}
  out: dict[str, float | np.ndarray] = {}
  for name, m in metrics.items():
    value = np.asarray(values[name])
    out[name] = float(value) if value.ndim == 0 else value
    if isinstance(m, AUC):
      _warn_if_coarse(name, m)
  return out


@jax.jit
def _results(metrics: dict[str, Metric]) -> dict[str, jax.Array]:
  return {name: m.result() for name, m in metrics.items()}


COARSE_AUC_FRACTION = 0.5


def _warn_if_coarse(name: str, m: AUC) -> None:
  fraction, low, high = m.densest_interval()
  if fraction > COARSE_AUC_FRACTION:
    logger.warning(
        'metric %r: %.0f%% of the predictions fall between two adjacent thresholds (%.3g, %.3g], '
        'so this AUC (%d thresholds) is far from the exact one (a ROC AUC of 0.5 when all do). Use '
        "thresholds that follow the data: metrics.auc(..., thresholds=metrics.logit_thresholds()) "
        "or metrics.quantile_thresholds(scores); for a head, BinaryClassHead(auc_thresholds="
        "'logit')", name, 100 * fraction, low, high, m.num_thresholds)
