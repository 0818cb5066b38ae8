"""`BinaryClassHead` and `MultiClassHead`: single-label classification, as TF v2."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jestimator import losses
from jestimator.model import export_output
from jestimator.model import metrics as metrics_lib
from jestimator.canned.heads import _vocab
from jestimator.canned.heads.base import (AccuracyBaseline, SingleHead, check_auc_thresholds,
                                          check_loss_fn, check_prediction_keys, check_thresholds,
                                          check_weight_column)
from jestimator.canned.heads.keys import (CLASSIFY_SERVING_KEY, DEFAULT_SERVING_KEY,
                                          PREDICT_SERVING_KEY, REGRESS_SERVING_KEY,
                                          LossReduction, MetricKeys, PredictionKeys)
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.spec import EstimatorSpec

_K = MetricKeys
_P = PredictionKeys


def sigmoid_cross_entropy(labels: jax.Array, logits: jax.Array) -> jax.Array:
  """TF's `sigmoid_cross_entropy_with_logits`, elementwise, with the gradient `sigmoid(z) - y`
  also at `z = 0` (see `jestimator.losses.sigmoid_cross_entropy_with_logits`); float32 at least."""
  logits = jnp.asarray(logits)
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  return losses.sigmoid_cross_entropy_with_logits(jnp.asarray(labels, logits.dtype), logits)


class _ClassHead(SingleHead):
  """What the single-label class heads share: vocabulary, class names, string outputs."""
  _n_classes: int
  _label_vocabulary: tuple[str, ...] | None

  @property
  def label_vocabulary(self) -> tuple[str, ...] | None:
    """The class names labels are given as (strings), or None when labels are ids."""
    return self._label_vocabulary

  @property
  def class_names(self) -> tuple[str, ...]:
    """The strings of the `classes` / `all_classes` outputs: the vocabulary or '0', '1', ..."""
    return _vocab.class_names(self._label_vocabulary, self._n_classes)

  def _string_outputs(self) -> dict:
    names = self.class_names
    return {_P.CLASSES: (_P.CLASS_IDS, names), _P.ALL_CLASSES: (_P.ALL_CLASS_IDS, names)}

  def _classification_output(self, preds) -> export_output.ClassificationOutput:
    return export_output.ClassificationOutput(
        scores=preds[_P.PROBABILITIES], classes=preds[_P.ALL_CLASS_IDS],
        class_vocabulary=self.class_names)

  @staticmethod
  def _all_class_ids(logits, n: int) -> jax.Array:
    return jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), logits.shape[:-1] + (n,))


class BinaryClassHead(_ClassHead):
  """Binary classification with sigmoid cross-entropy (TF's `tf.estimator.BinaryClassHead`).

  Logits `[batch, 1]` (or `[batch]`); labels `[batch]` or `[batch, 1]`: class ids 0 or 1 (or
  strings of `label_vocabulary`), checked and mapped on the host by `labels_to_ids`.

  Predictions: `logits`, `logistic` (sigmoid), `probabilities` `[batch, 2]`, `class_ids`
  `[batch, 1]` (1 where logit > 0), `all_class_ids` `[batch, 2]`; the host adds the strings
  `classes` and `all_classes` (vocabulary entries, or '0'/'1').

  Eval metrics: `accuracy, accuracy_baseline, auc, auc_precision_recall, average_loss, label/mean,
  precision, prediction/mean, recall` and for each threshold t `accuracy/positive_threshold_<t>`,
  `precision/...`, `recall/...` (each suffixed `/<name>` when named).

  Args:
    weight_column: feature key (or numeric column) of per-example weights, `[batch]` or
      `[batch, 1]`; weights the loss and every metric.
    thresholds: extra thresholds in (0, 1) on `logistic` for the per-threshold metrics.
    label_vocabulary: list or tuple of the two class names, if labels are strings.
    loss_reduction: a `LossReduction` other than NONE.
    loss_fn: optional `loss_fn(labels, logits[, features][, loss_reduction])` returning the
      unreduced `[batch, 1]` loss.
    name: head name (metric key suffix; required inside `MultiHead`).
    auc_thresholds: the thresholds of `auc` and `auc_precision_recall`: None for TF's 200
      evenly spaced in [0, 1] (comparable with TF), 'logit' for `metrics.logit_thresholds()`
      (right also when scores sit in a narrow range, as for rare-event / CTR models, where TF's
      give 0.5), or explicit inner thresholds such as `metrics.quantile_thresholds(scores)`.

  Example (TF's): `BinaryClassHead().loss(np.array([[1], [1]]), np.array([[45.], [-41.]]))` is
  `(0 + 41) / 2 = 20.5`.
  """

  def __init__(self, weight_column: Any = None, thresholds: Sequence[float] | None = None,
               label_vocabulary: Sequence[str] | None = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               loss_fn: Callable[..., Any] | None = None, name: str | None = None,
               auc_thresholds: str | Sequence[float] | None = None):
    self._n_classes = 2
    self._label_vocabulary = _vocab.check_vocabulary(label_vocabulary, 2)
    self._thresholds = check_thresholds(thresholds)
    self._auc_thresholds = check_auc_thresholds(auc_thresholds)
    self._loss_reduction = LossReduction.validate(loss_reduction)
    check_loss_fn(loss_fn)
    self._loss_fn = loss_fn
    self._weight_column = check_weight_column(weight_column)
    self._name = name

  @property
  def logits_dimension(self) -> int:
    return 1

  @property
  def thresholds(self) -> tuple[float, ...]:
    """The thresholds of the per-threshold metrics."""
    return self._thresholds

  def labels_to_ids(self, labels) -> np.ndarray:
    """Host: string labels → int32 ids through `label_vocabulary`; numeric ones checked 0 or 1.

    Raises ValueError naming unknown labels (and the vocabulary) or values other than 0 and 1.
    TF's head accepted any value in [0, 1], so a label of 0.5 trained silently while accuracy,
    precision, recall and AUC (which count labels as classes) were meaningless; probabilities
    as labels belong to `LogisticRegressionHead`.
    """
    if self._label_vocabulary is not None:
      return _vocab.lookup(labels, self._label_vocabulary)
    arr = _vocab.check_ids(labels, 2, integer=False)
    flat = np.asarray(arr).reshape(-1)
    soft = flat[(flat != 0) & (flat != 1)]
    if soft.size:
      raise ValueError(f'labels of a binary classifier must be the class ids 0 or 1; got '
                       f'{np.unique(soft)[:10].tolist()}. For probabilities as labels use '
                       'LogisticRegressionHead (sigmoid cross-entropy on labels in [0, 1])')
    return arr

  def _process_labels(self, labels, logits):
    return self._labels_matching(labels, logits, 1).astype(jnp.float32)

  def _dummy_labels(self, logits):
    return jnp.zeros(logits.shape, jnp.float32)

  def _unweighted_loss(self, labels, logits):
    return sigmoid_cross_entropy(labels, logits)

  def predictions(self, logits, keys=None) -> dict:
    """The device predictions (see the class docstring); `keys` selects a subset."""
    keys = check_prediction_keys(
        keys, (_P.LOGITS, _P.LOGISTIC, _P.PROBABILITIES, _P.CLASS_IDS, _P.ALL_CLASS_IDS),
        host_only=(_P.CLASSES, _P.ALL_CLASSES))
    logits = self._check_logits(logits)
    two_class_logits = jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    out = {
        _P.LOGITS: lambda: logits,
        _P.LOGISTIC: lambda: jax.nn.sigmoid(logits),
        _P.PROBABILITIES: lambda: jax.nn.softmax(two_class_logits, axis=-1),
        # argmax of [0, logit]: ties (logit == 0) go to class 0, as TF.
        _P.CLASS_IDS: lambda: (logits > 0).astype(jnp.int32),
        _P.ALL_CLASS_IDS: lambda: self._all_class_ids(logits, 2),
    }
    return {k: out[k]() for k in keys}

  def _batch_metric_states(self, labels, logits, unweighted_loss, weights) -> dict:
    key = self._summary_key
    logistic = jax.nn.sigmoid(logits)
    class_ids = (logits > 0).astype(jnp.float32)
    label_mean = metrics_lib.mean(labels, weights)
    states = {
        key(_K.LOSS_MEAN): metrics_lib.mean(unweighted_loss, weights),
        key(_K.ACCURACY): metrics_lib.accuracy(labels, class_ids, weights),
        key(_K.PRECISION): metrics_lib.precision(labels, class_ids, weights),
        key(_K.RECALL): metrics_lib.recall(labels, class_ids, weights),
        key(_K.PREDICTION_MEAN): metrics_lib.mean(logistic, weights),
        key(_K.LABEL_MEAN): label_mean,
        key(_K.ACCURACY_BASELINE): AccuracyBaseline(total=label_mean.total,
                                                    count=label_mean.count),
        key(_K.AUC): metrics_lib.auc(labels, logistic, weights, thresholds=self._auc_thresholds),
        key(_K.AUC_PR): metrics_lib.auc(labels, logistic, weights, curve='PR',
                                        thresholds=self._auc_thresholds),
    }
    states.update(threshold_metric_states(key, self._thresholds, labels, logistic, weights))
    return states

  def _predict_spec(self, logits) -> EstimatorSpec:
    preds = self.predictions(logits)
    classification = self._classification_output(preds)
    return EstimatorSpec(
        ModeKeys.PREDICT, predictions=preds,
        export_outputs={
            DEFAULT_SERVING_KEY: classification,
            CLASSIFY_SERVING_KEY: classification,
            REGRESS_SERVING_KEY: export_output.RegressionOutput(preds[_P.LOGISTIC]),
            PREDICT_SERVING_KEY: export_output.PredictOutput(preds),
        },
        string_outputs=self._string_outputs())


def threshold_metric_states(key, thresholds, labels, scores, weights) -> dict:
  """`accuracy/`, `precision/` and `recall/positive_threshold_<t>` states (scalar results)."""
  states = {}
  for t in thresholds:
    states[key(_K.ACCURACY_AT_THRESHOLD % t)] = metrics_lib.accuracy_at_threshold(
        labels, scores, t, weights)
    p = metrics_lib.precision_at_thresholds(labels, scores, [t], weights)
    states[key(_K.PRECISION_AT_THRESHOLD % t)] = p.replace(
        true_positives=p.true_positives[0], false_positives=p.false_positives[0])
    r = metrics_lib.recall_at_thresholds(labels, scores, [t], weights)
    states[key(_K.RECALL_AT_THRESHOLD % t)] = r.replace(
        true_positives=r.true_positives[0], false_negatives=r.false_negatives[0])
  return states


class MultiClassHead(_ClassHead):
  """Single-label classification over `n_classes` with softmax cross-entropy (TF's head).

  Logits `[batch, n_classes]`; labels `[batch]` or `[batch, 1]` integer ids in [0, n_classes)
  (or strings of `label_vocabulary`, mapped on the host with `labels_to_ids`).

  Predictions: `logits`, `probabilities` (softmax), `class_ids` `[batch, 1]` (argmax),
  `all_class_ids` `[batch, n_classes]`; the host adds `classes` and `all_classes`.
  Eval metrics: `accuracy, average_loss` (suffixed `/<name>` when named).

  Args: as `BinaryClassHead` (without thresholds), plus `n_classes` (>= 2; TF itself demands > 2
  and uses `BinaryClassHead` for two classes, as the canned classifiers here do).
  """

  def __init__(self, n_classes: int, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               loss_fn: Callable[..., Any] | None = None, name: str | None = None):
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or (
        n_classes < 2):
      raise ValueError(f'n_classes must be an integer >= 2; got {n_classes!r}')
    self._n_classes = int(n_classes)
    self._label_vocabulary = _vocab.check_vocabulary(label_vocabulary, self._n_classes)
    self._loss_reduction = LossReduction.validate(loss_reduction)
    check_loss_fn(loss_fn)
    self._loss_fn = loss_fn
    self._weight_column = check_weight_column(weight_column)
    self._name = name

  @property
  def n_classes(self) -> int:
    """Number of classes."""
    return self._n_classes

  @property
  def logits_dimension(self) -> int:
    return self._n_classes

  def labels_to_ids(self, labels) -> np.ndarray:
    """Host: string labels → int32 ids via `label_vocabulary`, or integer ids checked in range.

    Raises ValueError naming unknown labels (and the vocabulary) or ids outside [0, n_classes).
    """
    if self._label_vocabulary is not None:
      return _vocab.lookup(labels, self._label_vocabulary)
    return _vocab.check_ids(labels, self._n_classes).astype(np.int32)

  def _process_labels(self, labels, logits):
    labels = self._labels_matching(labels, logits[..., :1], 1)
    return labels.astype(jnp.int32)

  def _dummy_labels(self, logits):
    return jnp.zeros(logits.shape[:-1] + (1,), jnp.int32)

  def _unweighted_loss(self, labels, logits):
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, labels, axis=-1)

  def predictions(self, logits, keys=None) -> dict:
    """The device predictions (see the class docstring); `keys` selects a subset."""
    keys = check_prediction_keys(
        keys, (_P.LOGITS, _P.PROBABILITIES, _P.CLASS_IDS, _P.ALL_CLASS_IDS),
        host_only=(_P.CLASSES, _P.ALL_CLASSES))
    logits = self._check_logits(logits)
    out = {
        _P.LOGITS: lambda: logits,
        _P.PROBABILITIES: lambda: jax.nn.softmax(logits, axis=-1),
        _P.CLASS_IDS: lambda: jnp.argmax(logits, axis=-1)[..., None].astype(jnp.int32),
        _P.ALL_CLASS_IDS: lambda: self._all_class_ids(logits, self._n_classes),
    }
    return {k: out[k]() for k in keys}

  def _batch_metric_states(self, labels, logits, unweighted_loss, weights) -> dict:
    key = self._summary_key
    class_ids = jnp.argmax(logits, axis=-1)[..., None].astype(jnp.int32)
    return {
        key(_K.LOSS_MEAN): metrics_lib.mean(unweighted_loss, weights),
        key(_K.ACCURACY): metrics_lib.accuracy(labels, class_ids, weights),
    }

  def _predict_spec(self, logits) -> EstimatorSpec:
    preds = self.predictions(logits)
    classification = self._classification_output(preds)
    return EstimatorSpec(
        ModeKeys.PREDICT, predictions=preds,
        export_outputs={
            DEFAULT_SERVING_KEY: classification,
            CLASSIFY_SERVING_KEY: classification,
            PREDICT_SERVING_KEY: export_output.PredictOutput(preds),
        },
        string_outputs=self._string_outputs())
