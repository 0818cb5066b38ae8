"""Linear estimators: a weighted sum over feature columns (sparse lookups, no one-hot matrices)."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn

from jestimator import columns
from jestimator.canned import _common
from jestimator.canned import optimizers as optimizers_lib
from jestimator.canned.heads import LossReduction


class Linear(nn.Module):
  """`columns.LinearModel` under the name `linear_model` (TF's variable layout)."""
  feature_columns: tuple
  logits_dimension: int
  sparse_combiner: str = 'sum'

  @nn.compact
  def __call__(self, features):
    return columns.LinearModel(self.feature_columns, units=self.logits_dimension,
                               sparse_combiner=self.sparse_combiner,
                               name='linear_model')(features)


def linear_logits_fn(head, feature_columns, sparse_combiner):
  cols = _common.check_columns(feature_columns, 'feature_columns')
  if not cols:
    raise ValueError('feature_columns must not be empty')
  if sparse_combiner not in ('sum', 'mean', 'sqrtn'):
    raise ValueError(f"sparse_combiner must be 'sum', 'mean' or 'sqrtn', got {sparse_combiner!r}")

  def logits_fn(features, labels, mode):
    return Linear(cols, head.logits_dimension, sparse_combiner, name='linear')(features)

  return logits_fn, cols


def linear_optimizer(optimizer: Any, n_columns: int, cap: float):
  """A string optimizer gets TF's linear learning rate min(cap, 1/sqrt(n_columns))."""
  return _common.resolve_optimizer(optimizer, optimizers_lib.linear_learning_rate(n_columns, cap))


class LinearEstimator(_common.CannedEstimator):
  """A linear model with any head (`tf.estimator.LinearEstimator`)."""

  def __init__(self, head, feature_columns: Sequence[Any], model_dir: str | None = None,
               optimizer: Any = 'Ftrl', config: Any = None, sparse_combiner: str = 'sum',
               warm_start_from: Any = None):
    logits_fn, cols = linear_logits_fn(head, feature_columns, sparse_combiner)
    opt = linear_optimizer(optimizer, len(cols), optimizers_lib.LINEAR_LEARNING_RATE)
    super().__init__(head, logits_fn, opt, cols, model_dir, config, warm_start_from)


class LinearClassifier(LinearEstimator):
  """A linear classifier (`tf.estimator.LinearClassifier`, v2 arguments and defaults).

  `auc_thresholds` (not in TF) is `BinaryClassHead`'s: 'logit' for rare-event data.
  """

  def __init__(self, feature_columns: Sequence[Any], model_dir: str | None = None,
               n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None, optimizer: Any = 'Ftrl',
               config: Any = None, warm_start_from: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               sparse_combiner: str = 'sum',
               auc_thresholds: Any = None):
    head = _common.classifier_head(n_classes, weight_column, label_vocabulary, loss_reduction,
                                   auc_thresholds)
    super().__init__(head, feature_columns, model_dir, optimizer, config, sparse_combiner,
                     warm_start_from)


class LinearRegressor(LinearEstimator):
  """A linear regressor (`tf.estimator.LinearRegressor`, v2 arguments and defaults)."""

  def __init__(self, feature_columns: Sequence[Any], model_dir: str | None = None,
               label_dimension: int = 1, weight_column: Any = None, optimizer: Any = 'Ftrl',
               config: Any = None, warm_start_from: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               sparse_combiner: str = 'sum'):
    head = _common.regressor_head(label_dimension, weight_column, loss_reduction)
    super().__init__(head, feature_columns, model_dir, optimizer, config, sparse_combiner,
                     warm_start_from)
