"""`RegressionHead`, `PoissonRegressionHead` and `LogisticRegressionHead`, as TF v2."""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jestimator.model import export_output
from jestimator.model import metrics as metrics_lib
from jestimator.canned.heads import _vocab
from jestimator.canned.heads.base import (SingleHead, check_loss_fn, check_prediction_keys,
                                          check_weight_column)
from jestimator.canned.heads.keys import (DEFAULT_SERVING_KEY, PREDICT_SERVING_KEY,
                                          REGRESS_SERVING_KEY, LossReduction, MetricKeys,
                                          PredictionKeys)
from jestimator.canned.heads.classification import sigmoid_cross_entropy
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.spec import EstimatorSpec

_K = MetricKeys
_P = PredictionKeys


class RegressionHead(SingleHead):
  """Regression with squared error (TF's `tf.estimator.RegressionHead`).

  Logits `[batch, label_dimension]`; labels the same shape (or `[batch]` when
  `label_dimension == 1`). The per-element loss is `(label - logit)**2`, so the default
  SUM_OVER_BATCH_SIZE divides by `batch * label_dimension`. Weights may be `[batch]`,
  `[batch, 1]` or `[batch, label_dimension]`.

  Predictions: `predictions` (`inverse_link_fn(logits)`, or the logits), plus `logits` when an
  inverse link is set. Eval metrics: `average_loss, label/mean, prediction/mean`.

  Args:
    label_dimension: number of regression targets per example (>= 1).
    weight_column: feature key (or numeric column) of weights.
    loss_reduction: a `LossReduction` other than NONE.
    loss_fn: optional `loss_fn(labels, logits[, features][, loss_reduction])` returning the
      unreduced `[batch, label_dimension]` loss.
    inverse_link_fn: optional mean function applied to the logits for `predictions`.
    name: head name (metric key suffix).

  Example (TF's): logits [[45], [41]], labels [[43], [44]] give loss (4 + 9) / 2 = 6.5.
  """

  def __init__(self, label_dimension: int = 1, weight_column: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               loss_fn: Callable[..., Any] | None = None,
               inverse_link_fn: Callable[[jax.Array], jax.Array] | None = None,
               name: str | None = None):
    if isinstance(label_dimension, bool) or not isinstance(label_dimension, (int, np.integer)) or (
        label_dimension < 1):
      raise ValueError(f'label_dimension must be an integer >= 1; got {label_dimension!r}')
    self._label_dimension = int(label_dimension)
    self._loss_dimension = self._label_dimension
    self._allow_per_logit_weights = True
    self._loss_reduction = LossReduction.validate(loss_reduction)
    check_loss_fn(loss_fn)
    self._loss_fn = loss_fn
    if inverse_link_fn is not None and not callable(inverse_link_fn):
      raise TypeError(f'inverse_link_fn must be callable; got {type(inverse_link_fn).__name__}')
    self._inverse_link_fn = inverse_link_fn
    self._weight_column = check_weight_column(weight_column)
    self._name = name

  @property
  def logits_dimension(self) -> int:
    return self._label_dimension

  def labels_to_ids(self, labels) -> np.ndarray:
    """Host: the labels as a numpy array, checked to be numeric (no vocabulary)."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in 'biuf':
      raise ValueError(f'{type(self).__name__} labels must be numeric; got dtype {arr.dtype}')
    return arr

  def _process_labels(self, labels, logits):
    return self._labels_matching(labels, logits, self._label_dimension).astype(jnp.float32)

  def _dummy_labels(self, logits):
    return jnp.zeros(logits.shape, jnp.float32)

  def _unweighted_loss(self, labels, logits):
    return jnp.square(labels - logits)

  def predictions(self, logits, keys=None) -> dict:
    """`{'predictions': ...}` (+ `'logits'` with an inverse link); `keys` selects a subset."""
    valid = (_P.PREDICTIONS, _P.LOGITS) if self._inverse_link_fn else (_P.PREDICTIONS,)
    keys = check_prediction_keys(keys, valid)
    logits = self._check_logits(logits)
    out = {}
    if _P.PREDICTIONS in keys:
      out[_P.PREDICTIONS] = (self._inverse_link_fn(logits) if self._inverse_link_fn
                             else logits)
    if _P.LOGITS in keys:
      out[_P.LOGITS] = logits
    return out

  def _batch_metric_states(self, labels, logits, unweighted_loss, weights) -> dict:
    key = self._summary_key
    predicted = self._inverse_link_fn(logits) if self._inverse_link_fn else logits
    return {
        key(_K.LOSS_MEAN): metrics_lib.mean(unweighted_loss, weights),
        key(_K.LABEL_MEAN): metrics_lib.mean(labels, weights),
        key(_K.PREDICTION_MEAN): metrics_lib.mean(predicted, weights),
    }

  def _predict_spec(self, logits) -> EstimatorSpec:
    preds = self.predictions(logits)
    regression = export_output.RegressionOutput(preds[_P.PREDICTIONS])
    return EstimatorSpec(
        ModeKeys.PREDICT, predictions=preds,
        export_outputs={
            DEFAULT_SERVING_KEY: regression,
            REGRESS_SERVING_KEY: regression,
            PREDICT_SERVING_KEY: export_output.PredictOutput(preds),
        })


def log_poisson_loss(targets: jax.Array, log_input: jax.Array,
                     compute_full_loss: bool = True) -> jax.Array:
  """TF's `tf.nn.log_poisson_loss`: `exp(c) - z * c`, plus Stirling's `log(z!)` term for z > 1."""
  loss = jnp.exp(log_input) - targets * log_input
  if compute_full_loss:
    safe = jnp.where(targets > 1, targets, 2.0)  # keeps log() finite where the term is unused
    stirling = safe * jnp.log(safe) - safe + 0.5 * jnp.log(2.0 * math.pi * safe)
    loss = loss + jnp.where(targets > 1, stirling, 0.0)
  return loss


class PoissonRegressionHead(RegressionHead):
  """Poisson regression (TF's `tf.estimator.PoissonRegressionHead`).

  Loss `log_poisson_loss(labels, logits, compute_full_loss)`, i.e. `exp(logit) - label * logit`
  (+ Stirling's approximation of `log(label!)` for labels > 1 when `compute_full_loss`);
  `predictions = exp(logits)`, and `logits` is predicted too. Shapes and metrics as
  `RegressionHead`.
  """

  def __init__(self, label_dimension: int = 1, weight_column: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               compute_full_loss: bool = True, name: str | None = None):
    super().__init__(label_dimension=label_dimension, weight_column=weight_column,
                     loss_reduction=loss_reduction, inverse_link_fn=jnp.exp, name=name)
    self._compute_full_loss = bool(compute_full_loss)

  def _unweighted_loss(self, labels, logits):
    return log_poisson_loss(labels, logits, self._compute_full_loss)


class LogisticRegressionHead(RegressionHead):
  """Logistic regression on labels in [0, 1] (TF's `tf.estimator.LogisticRegressionHead`).

  Sigmoid cross-entropy as `BinaryClassHead`, but without vocabulary, AUC or class outputs:
  predictions are `predictions = sigmoid(logits)` and `logits`; metrics as `RegressionHead`.
  Logits `[batch, 1]`; labels `[batch]` or `[batch, 1]`, checked in [0, 1] by `labels_to_ids`.
  """

  def __init__(self, weight_column: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, name: str | None = None):
    super().__init__(label_dimension=1, weight_column=weight_column,
                     loss_reduction=loss_reduction, inverse_link_fn=jax.nn.sigmoid, name=name)

  def labels_to_ids(self, labels) -> np.ndarray:
    """Host: labels checked to be numbers in [0, 1] (ValueError naming the offending values)."""
    return _vocab.check_ids(labels, 2, integer=False)

  def _unweighted_loss(self, labels, logits):
    return sigmoid_cross_entropy(labels, logits)
