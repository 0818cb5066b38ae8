"""Metric states: the pytrees of weighted sums that `jestimator.metrics` functions return.

Each state (`Mean`, `Precision`, `Recall`, `AUC`, ...) holds sums, never ratios, so `merge` (an
elementwise sum) of the states of several batches is the state of their concatenation; `result()`
turns the sums into the metric value (pure jnp, usable under jit). Build states with the functions
of `jestimator.metrics`; this module is what they return.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

CURVES = ('ROC', 'PR')
SUMMATION_METHODS = ('interpolation', 'minoring', 'majoring')
# Keras' backend epsilon: the outer AUC thresholds sit just outside [0, 1].
THRESHOLD_EPSILON = 1e-7


def _div_no_nan(x, y):
  """x / y, and 0 where y == 0 (TF's div_no_nan)."""
  safe = jnp.where(y == 0, 1.0, y)
  return jnp.where(y == 0, 0.0, x / safe)


class Metric(flax.struct.PyTreeNode):
  """Base class of metric states: a pytree whose array leaves are float32 sums.

  Subclasses declare their sums as fields and configuration as
  `flax.struct.field(pytree_node=False)`, and implement `result()`.
  """

  def merge(self, other: 'Metric') -> 'Metric':
    """The state of both batches together: the elementwise sum of all leaves (works under jit)."""
    if type(other) is not type(self):
      raise TypeError(f'cannot merge a {type(self).__name__} state with a '
                      f'{type(other).__name__} state')
    mine, theirs = jax.tree.structure(self), jax.tree.structure(other)
    if mine != theirs:
      raise ValueError(f'cannot merge {type(self).__name__} states with different configurations: '
                       f'{_config(self)} vs {_config(other)}')
    for a, b in zip(jax.tree.leaves(self), jax.tree.leaves(other)):
      if jnp.shape(a) != jnp.shape(b):
        raise ValueError(f'cannot merge {type(self).__name__} states whose sums have shapes '
                         f'{jnp.shape(a)} and {jnp.shape(b)}')
    return jax.tree.map(jnp.add, self, other)

  def result(self) -> jax.Array:
    """The metric value (pure jnp; a scalar, or `[T]` for the *_at_thresholds metrics)."""
    raise TypeError(f'{type(self).__name__} is a metric state without a result(); every '
                    'subclass of Metric defines one')

  def zeros_like(self) -> 'Metric':
    """A state of the same type and configuration with all sums zero (the identity of merge)."""
    return jax.tree.map(jnp.zeros_like, self)


def _config(m: Metric) -> dict[str, Any]:
  return {f.name: getattr(m, f.name) for f in dataclasses.fields(m)
          if not f.metadata.get('pytree_node', True)}


def is_metric(x: Any) -> bool:
  """True for a metric state (use as `is_leaf` when mapping over dicts of states)."""
  return isinstance(x, Metric)


def merge(a: Metric, b: Metric) -> Metric:
  """`a.merge(b)` as a function (handy in `jax.tree.map(merge, x, y, is_leaf=is_metric)`)."""
  return a.merge(b)


class Mean(Metric):
  """Weighted mean: `result = total / count`, 0.0 when `count == 0`.

  Attributes:
    total: `[]` float32, the sum of `weights * values`.
    count: `[]` float32, the sum of the (broadcast) weights.
  """
  total: jax.Array
  count: jax.Array

  def result(self) -> jax.Array:
    return _div_no_nan(self.total, self.count)


class RootMeanSquaredError(Mean):
  """`sqrt(total / count)` of weighted squared errors (0.0 when `count == 0`)."""

  def result(self) -> jax.Array:
    return jnp.sqrt(_div_no_nan(self.total, self.count))


class Precision(Metric):
  """`true_positives / (true_positives + false_positives)`, 0.0 when nothing was predicted positive.

  Attributes:
    true_positives, false_positives: `[]` float32 weighted counts, or `[T]` (one per threshold).
    thresholds: the thresholds for `precision_at_thresholds` (empty for `precision`).
  """
  true_positives: jax.Array
  false_positives: jax.Array
  thresholds: tuple[float, ...] = flax.struct.field(pytree_node=False, default=())

  def result(self) -> jax.Array:
    return _div_no_nan(self.true_positives, self.true_positives + self.false_positives)


class Recall(Metric):
  """`true_positives / (true_positives + false_negatives)`, 0.0 when there are no positive labels.

  Attributes:
    true_positives, false_negatives: `[]` float32 weighted counts, or `[T]` (one per threshold).
    thresholds: the thresholds for `recall_at_thresholds` (empty for `recall`).
  """
  true_positives: jax.Array
  false_negatives: jax.Array
  thresholds: tuple[float, ...] = flax.struct.field(pytree_node=False, default=())

  def result(self) -> jax.Array:
    return _div_no_nan(self.true_positives, self.true_positives + self.false_negatives)


def evenly_spaced_thresholds(num_thresholds: int) -> np.ndarray:
  """The `[num_thresholds]` float32 thresholds of `tf.keras.metrics.AUC` (its default).

  `[-1e-7] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)] + [1 + 1e-7]`.
  """
  inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
  return np.array([0.0 - THRESHOLD_EPSILON] + inner + [1.0 + THRESHOLD_EPSILON], np.float32)


class AUC(Metric):
  """Area under the ROC or PR curve from confusion counts at `num_thresholds` thresholds.

  Matches `tf.keras.metrics.AUC.result()`. Attributes `true_positives`, `false_positives`,
  `true_negatives`, `false_negatives` are `[num_thresholds]` float32 weighted counts of
  `prediction > threshold`; `num_thresholds`, `curve` ('ROC' | 'PR'), `summation_method`
  ('interpolation' | 'minoring' | 'majoring') and `thresholds` (the inner thresholds when given
  explicitly, else `()` for TF's evenly spaced ones) are static configuration.
  """
  true_positives: jax.Array
  false_positives: jax.Array
  true_negatives: jax.Array
  false_negatives: jax.Array
  num_thresholds: int = flax.struct.field(pytree_node=False, default=200)
  curve: str = flax.struct.field(pytree_node=False, default='ROC')
  summation_method: str = flax.struct.field(pytree_node=False, default='interpolation')
  thresholds: tuple[float, ...] = flax.struct.field(pytree_node=False, default=())

  def threshold_values(self) -> np.ndarray:
    """All `[num_thresholds]` thresholds, the outer two just outside [0, 1]."""
    if not self.thresholds:
      return evenly_spaced_thresholds(self.num_thresholds)
    return np.array([0.0 - THRESHOLD_EPSILON, *self.thresholds, 1.0 + THRESHOLD_EPSILON],
                    np.float32)

  def densest_interval(self) -> tuple[float, float, float]:
    """`(fraction, low, high)`: the largest share of the weight of predictions that fell in one
    interval `(low, high]` between adjacent thresholds (host-side, on a computed state).

    A share near 1 means the curve has hardly any points: the AUC is then coarse, and 0.5 when
    all predictions share one interval.
    """
    tp, fp, tn, fn = (np.asarray(a, np.float64) for a in (
        self.true_positives, self.false_positives, self.true_negatives, self.false_negatives))
    above = tp + fp
    total = float(above[0] + tn[0] + fn[0])
    if total <= 0:
      return 0.0, 0.0, 0.0
    inside = above[:-1] - above[1:]
    i = int(np.argmax(inside))
    t = self.threshold_values()
    return float(inside[i] / total), float(t[i]), float(t[i + 1])

  def result(self) -> jax.Array:
    tp, fp = self.true_positives, self.false_positives
    tn, fn = self.true_negatives, self.false_negatives
    if self.curve == 'PR' and self.summation_method == 'interpolation':
      return _interpolate_pr_auc(tp, fp, fn)
    recall = _div_no_nan(tp, tp + fn)
    if self.curve == 'ROC':
      x, y = _div_no_nan(fp, fp + tn), recall
    else:
      x, y = recall, _div_no_nan(tp, tp + fp)
    if self.summation_method == 'interpolation':
      heights = (y[:-1] + y[1:]) / 2.0
    elif self.summation_method == 'minoring':
      heights = jnp.minimum(y[:-1], y[1:])
    else:
      heights = jnp.maximum(y[:-1], y[1:])
    # Thresholds increase, so x decreases: x[i] - x[i+1] is the (non-negative) width.
    return jnp.sum((x[:-1] - x[1:]) * heights)


def _interpolate_pr_auc(tp, fp, fn):
  """Keras' closed form of Davis & Goadrich (2006) PR interpolation.

  Between consecutive thresholds A (lower) and B, TP and P = TP + FP vary linearly, so precision
  is `(intercept + slope * P) / P`; integrating over recall gives
  `slope * (dTP + intercept * log(P_A / P_B)) / total_positives` per interval.
  """
  dtp = tp[:-1] - tp[1:]
  p = tp + fp
  dp = p[:-1] - p[1:]
  slope = _div_no_nan(dtp, jnp.maximum(dp, 0.0))
  intercept = tp[1:] - slope * p[1:]
  both_positive = (p[:-1] > 0) & (p[1:] > 0)
  ratio = jnp.where(both_positive, _div_no_nan(p[:-1], jnp.maximum(p[1:], 0.0)), 1.0)
  # Where P_B == 0 the ratio is 1 and log(1) = 0: precision is held constant over the interval.
  increment = _div_no_nan(slope * (dtp + intercept * jnp.log(ratio)),
                          jnp.maximum(tp[1:] + fn[1:], 0.0))
  return jnp.sum(increment)
