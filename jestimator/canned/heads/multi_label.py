"""`MultiLabelHead`: several independent binary labels per example, as TF v2."""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jestimator.model import export_output
from jestimator.model import metrics as metrics_lib
from jestimator.canned.heads import _vocab
from jestimator.canned.heads.base import (SingleHead, check_auc_thresholds, check_loss_fn,
                                          check_prediction_keys, check_thresholds, check_weight_column)
from jestimator.canned.heads.keys import (CLASSIFY_SERVING_KEY, DEFAULT_SERVING_KEY,
                                          PREDICT_SERVING_KEY, LossReduction, MetricKeys,
                                          PredictionKeys)
from jestimator.canned.heads.classification import (sigmoid_cross_entropy,
                                                    threshold_metric_states)
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.spec import EstimatorSpec

_K = MetricKeys
_P = PredictionKeys


class MultiLabelHead(SingleHead):
  """Multi-label classification with sigmoid cross-entropy (TF's `tf.estimator.MultiLabelHead`).

  Logits `[batch, n_classes]`; labels a multi-hot `[batch, n_classes]` {0, 1} array (the host
  helper `labels_to_ids` also turns rows of class names or ids into one). The per-example loss
  is the sigmoid cross-entropy **averaged over the classes**, so its shape is `[batch, 1]` and
  weights are per example (`[batch]` or `[batch, 1]`).

  Predictions: `logits`, `probabilities` (sigmoid); in PREDICT the spec adds `classes`, the names
  of **all** classes (TF's), made on the host.
  Eval metrics: `auc, auc_precision_recall, average_loss` over all (example, class) pairs,
  per threshold `accuracy/`, `precision/`, `recall/positive_threshold_<t>`, and for each class
  in `classes_for_class_based_metrics`: `probability_mean/class<i>`, `auc/class<i>`,
  `auc_precision_recall/class<i>` (`/<name>` instead of `class<i>` with a vocabulary).

  Args:
    n_classes: number of labels (>= 2).
    weight_column, thresholds, label_vocabulary, loss_reduction, name: as `BinaryClassHead`
      (`label_vocabulary` has `n_classes` names).
    loss_fn: optional `loss_fn(labels, logits[, features][, loss_reduction])` returning the
      unreduced `[batch, 1]` loss; labels are the multi-hot ids.
    classes_for_class_based_metrics: class ids, or names of `label_vocabulary`, that get
      per-class metrics.
    auc_thresholds: thresholds of every AUC metric, as `BinaryClassHead`'s.
  """

  def __init__(self, n_classes: int, weight_column: Any = None,
               thresholds: Sequence[float] | None = None,
               label_vocabulary: Sequence[str] | None = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               loss_fn: Callable[..., Any] | None = None,
               classes_for_class_based_metrics: Sequence[int | str] | None = None,
               name: str | None = None, auc_thresholds: str | Sequence[float] | None = None):
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or (
        n_classes < 2):
      raise ValueError(f'n_classes must be an integer >= 2 for multi-label classification; got '
                       f'{n_classes!r}')
    self._n_classes = int(n_classes)
    self._thresholds = check_thresholds(thresholds)
    self._auc_thresholds = check_auc_thresholds(auc_thresholds)
    self._label_vocabulary = _vocab.check_vocabulary(label_vocabulary, self._n_classes)
    self._loss_reduction = LossReduction.validate(loss_reduction)
    check_loss_fn(loss_fn)
    self._loss_fn = loss_fn
    self._class_ids_for_metrics = self._check_metric_classes(classes_for_class_based_metrics)
    self._weight_column = check_weight_column(weight_column)
    self._name = name

  def _check_metric_classes(self, classes) -> tuple[int, ...]:
    out = []
    for c in classes or ():
      if isinstance(c, (str, bytes)):
        if self._label_vocabulary is None:
          raise ValueError('classes_for_class_based_metrics holds names, which needs '
                           f'label_vocabulary; got {c!r}')
        name = c.decode() if isinstance(c, bytes) else c
        if name not in self._label_vocabulary:
          raise ValueError(f'classes_for_class_based_metrics entry {name!r} is not in '
                           f'label_vocabulary {list(self._label_vocabulary)}')
        out.append(self._label_vocabulary.index(name))
      else:
        if not 0 <= int(c) < self._n_classes:
          raise ValueError(f'classes_for_class_based_metrics must be in [0, {self._n_classes}); '
                           f'got {c!r}')
        out.append(int(c))
    return tuple(out)

  @property
  def n_classes(self) -> int:
    """Number of labels per example."""
    return self._n_classes

  @property
  def logits_dimension(self) -> int:
    return self._n_classes

  @property
  def label_vocabulary(self) -> tuple[str, ...] | None:
    """The class names (or None)."""
    return self._label_vocabulary

  @property
  def class_names(self) -> tuple[str, ...]:
    """The strings of the `classes` output: the vocabulary or '0', '1', ..."""
    return _vocab.class_names(self._label_vocabulary, self._n_classes)

  def labels_to_ids(self, labels) -> np.ndarray:
    """Host: labels → an int32 multi-hot `[batch, n_classes]` array.

    Accepts a numeric multi-hot `[batch, n_classes]` array (checked to be 0/1), or one sequence
    per example of class names (with `label_vocabulary`; '' entries are padding) or of class ids.
    Raises ValueError naming unknown names or out-of-range ids.
    """
    arr = labels if isinstance(labels, np.ndarray) else None
    if arr is None:
      try:
        arr = np.asarray(labels)
      except ValueError:  # ragged rows
        arr = None
    if arr is not None and arr.dtype.kind in 'biuf' and arr.ndim == 2 and (
        arr.shape[1] == self._n_classes):
      bad = arr[(arr != 0) & (arr != 1)]
      if bad.size:
        raise ValueError(f'multi-hot labels must be 0 or 1; got {np.unique(bad)[:10].tolist()}')
      return arr.astype(np.int32)
    rows = [np.asarray(r).reshape(-1) for r in (labels if arr is None or arr.dtype == object
                                                 or arr.ndim != 2 else arr)]
    lengths = np.array([len(r) for r in rows], np.int64)
    flat = (np.concatenate(rows) if rows and lengths.sum() else np.zeros([0], np.int64))
    row_of = np.repeat(np.arange(len(rows)), lengths)
    if flat.dtype.kind in 'USO':
      if self._label_vocabulary is None:
        raise ValueError('labels are class names but the head has no label_vocabulary; pass '
                         'label_vocabulary=[...] or multi-hot / id labels')
      # '' (or b'') entries pad the rows of a dense string array.
      real = ((flat != '') & (flat != b'')) if flat.dtype == object else (
          flat != flat.dtype.type())
      flat, row_of = flat[real], row_of[real]
      ids = _vocab.lookup(flat, self._label_vocabulary) if flat.size else flat.astype(np.int32)
    else:
      ids = _vocab.check_ids(flat, self._n_classes).astype(np.int64)
    out = np.zeros((len(rows), self._n_classes), np.int32)
    out[row_of, ids.astype(np.int64)] = 1
    return out

  def _process_labels(self, labels, logits):
    return self._labels_matching(labels, logits, self._n_classes).astype(jnp.float32)

  def _dummy_labels(self, logits):
    return jnp.zeros(logits.shape, jnp.float32)

  def _unweighted_loss(self, labels, logits):
    return jnp.mean(sigmoid_cross_entropy(labels, logits), axis=-1, keepdims=True)

  def predictions(self, logits, keys=None) -> dict:
    """`logits` and `probabilities` (device arrays); `keys` selects a subset."""
    keys = check_prediction_keys(keys, (_P.LOGITS, _P.PROBABILITIES), host_only=(_P.CLASSES,))
    logits = self._check_logits(logits)
    out = {_P.LOGITS: lambda: logits, _P.PROBABILITIES: lambda: jax.nn.sigmoid(logits)}
    return {k: out[k]() for k in keys}

  def _class_key(self, pattern_id: str, pattern_name: str, class_id: int) -> str:
    if self._label_vocabulary is None:
      return self._summary_key(pattern_id % class_id)
    return self._summary_key(pattern_name % self._label_vocabulary[class_id])

  def _batch_metric_states(self, labels, logits, unweighted_loss, weights) -> dict:
    key = self._summary_key
    probabilities = jax.nn.sigmoid(logits)
    auc = functools.partial(metrics_lib.auc, thresholds=self._auc_thresholds)
    states = {
        key(_K.LOSS_MEAN): metrics_lib.mean(unweighted_loss, weights),
        key(_K.AUC): auc(labels, probabilities, weights),
        key(_K.AUC_PR): auc(labels, probabilities, weights, curve='PR'),
    }
    states.update(threshold_metric_states(key, self._thresholds, labels, probabilities, weights))
    for c in self._class_ids_for_metrics:
      p, y = probabilities[:, c], labels[:, c]
      w = None if weights is None else weights[:, 0]
      states[self._class_key(_K.PROBABILITY_MEAN_AT_CLASS, _K.PROBABILITY_MEAN_AT_NAME, c)] = (
          metrics_lib.mean(p, w))
      states[self._class_key(_K.AUC_AT_CLASS, _K.AUC_AT_NAME, c)] = auc(y, p, w)
      states[self._class_key(_K.AUC_PR_AT_CLASS, _K.AUC_PR_AT_NAME, c)] = auc(y, p, w,
                                                                               curve='PR')
    return states

  def _predict_spec(self, logits) -> EstimatorSpec:
    preds = self.predictions(logits)
    all_ids = jnp.broadcast_to(jnp.arange(self._n_classes, dtype=jnp.int32), logits.shape)
    classification = export_output.ClassificationOutput(
        scores=preds[_P.PROBABILITIES], classes=all_ids, class_vocabulary=self.class_names)
    # TF's `classes` holds all class names. JAX holds no strings: the ids travel under the same
    # key and the host replaces them with the names (string_outputs maps the key onto itself).
    preds = dict(preds, **{_P.CLASSES: all_ids})
    return EstimatorSpec(
        ModeKeys.PREDICT, predictions=preds,
        export_outputs={
            DEFAULT_SERVING_KEY: classification,
            CLASSIFY_SERVING_KEY: classification,
            PREDICT_SERVING_KEY: export_output.PredictOutput(preds),
        },
        string_outputs={_P.CLASSES: (_P.CLASSES, self.class_names)})
