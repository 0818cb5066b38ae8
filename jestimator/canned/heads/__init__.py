"""Heads: from logits to loss, predictions, eval metrics and export signatures (TF v2's heads).

A head lets a `model_fn` stop at the logits:

  def model_fn(features, labels, mode):
    logits = nn.Dense(1)(features['x'])
    return BinaryClassHead().create_estimator_spec(features, mode, logits, labels,
                                                   optimizer=optax.adagrad(0.05))

Loss reduction, metric keys, prediction keys and export signatures follow TF v2
(`tf.estimator.BinaryClassHead` etc.). String outputs (`classes`, `all_classes`) are made on the
host from the integer ids (`EstimatorSpec.string_outputs`), and string labels are mapped to ids
on the host with `head.labels_to_ids` (via `label_vocabulary`).
"""
from jestimator.canned.heads.base import AccuracyBaseline, Head
from jestimator.canned.heads.keys import LossReduction, MetricKeys, PredictionKeys
from jestimator.canned.heads.classification import BinaryClassHead, MultiClassHead
from jestimator.canned.heads.multi_head import MultiHead
from jestimator.canned.heads.multi_label import MultiLabelHead
from jestimator.canned.heads.regression import (LogisticRegressionHead, PoissonRegressionHead,
                                                RegressionHead)

__all__ = [
    'AccuracyBaseline', 'BinaryClassHead', 'Head', 'LogisticRegressionHead', 'LossReduction',
    'MetricKeys', 'MultiClassHead', 'MultiHead', 'MultiLabelHead', 'PoissonRegressionHead',
    'PredictionKeys', 'RegressionHead',
]
