"""Names shared by the heads: loss reductions, metric keys, prediction keys, signature names."""
from __future__ import annotations


class LossReduction:
  """How a head reduces the weighted per-element loss to the training loss (`tf.losses.Reduction`).

  * `SUM_OVER_BATCH_SIZE` (default, TF v2): `sum(w * l) / number of loss elements` — the number of
    elements (batch × loss dimension), not `sum(w)`. Weights (1, 3) on two examples with zero
    logits give `(1 + 3) * ln 2 / 2`.
  * `SUM`: `sum(w * l)` (the default of TF's v1 heads).
  * `MEAN`: `sum(w * l) / sum(w)` (v1's `weighted_mean`).
  * `AUTO`: `SUM_OVER_BATCH_SIZE`, as Keras resolves it.
  * `NONE`: rejected, as TF rejects it: a head must produce a scalar loss.

  Padding rows (`jestimator.padding.example_mask()`) get weight 0 and are not counted as elements.
  """
  AUTO = 'auto'
  NONE = 'none'
  SUM = 'sum'
  SUM_OVER_BATCH_SIZE = 'sum_over_batch_size'
  MEAN = 'weighted_mean'

  @classmethod
  def all(cls) -> tuple[str, ...]:
    """Every reduction name, including the rejected `NONE`."""
    return (cls.AUTO, cls.NONE, cls.SUM, cls.SUM_OVER_BATCH_SIZE, cls.MEAN)

  @classmethod
  def validate(cls, reduction: str) -> str:
    """Returns `reduction` if a head accepts it; ValueError otherwise (TF's check)."""
    if reduction not in cls.all() or reduction == cls.NONE:
      raise ValueError(f'Invalid loss_reduction: {reduction!r}; expected one of '
                       f'{[r for r in cls.all() if r != cls.NONE]} (LossReduction.*); NONE is not '
                       'allowed since a head must return a scalar loss')
    return reduction


class MetricKeys:
  """Metric names of TF's heads (`tensorflow_estimator/.../canned/metric_keys.py`)."""
  LOSS = 'loss'
  LOSS_MEAN = 'average_loss'
  LOSS_REGULARIZATION = 'regularization_loss'
  ACCURACY = 'accuracy'
  PRECISION = 'precision'
  RECALL = 'recall'
  ACCURACY_BASELINE = 'accuracy_baseline'
  AUC = 'auc'
  AUC_PR = 'auc_precision_recall'
  LABEL_MEAN = 'label/mean'
  PREDICTION_MEAN = 'prediction/mean'
  ACCURACY_AT_THRESHOLD = 'accuracy/positive_threshold_%g'
  PRECISION_AT_THRESHOLD = 'precision/positive_threshold_%g'
  RECALL_AT_THRESHOLD = 'recall/positive_threshold_%g'
  PROBABILITY_MEAN_AT_CLASS = 'probability_mean/class%d'
  AUC_AT_CLASS = 'auc/class%d'
  AUC_PR_AT_CLASS = 'auc_precision_recall/class%d'
  PROBABILITY_MEAN_AT_NAME = 'probability_mean/%s'
  AUC_AT_NAME = 'auc/%s'
  AUC_PR_AT_NAME = 'auc_precision_recall/%s'


class PredictionKeys:
  """Prediction names of TF's heads (`prediction_keys.py`)."""
  LOGITS = 'logits'
  LOGISTIC = 'logistic'
  PROBABILITIES = 'probabilities'
  CLASS_IDS = 'class_ids'
  CLASSES = 'classes'
  ALL_CLASS_IDS = 'all_class_ids'
  ALL_CLASSES = 'all_classes'
  PREDICTIONS = 'predictions'


DEFAULT_SERVING_KEY = 'serving_default'
CLASSIFY_SERVING_KEY = 'classification'
REGRESS_SERVING_KEY = 'regression'
PREDICT_SERVING_KEY = 'predict'
