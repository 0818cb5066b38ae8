"""Baseline estimators: logits are one learned bias, ignoring the features (a sanity floor)."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jestimator.canned import _common
from jestimator.canned import optimizers as optimizers_lib
from jestimator.canned.heads import LossReduction


class Baseline(nn.Module):
  """`[batch, logits_dimension]` logits equal to a learned `bias` for every example."""
  logits_dimension: int

  @nn.compact
  def __call__(self, batch_size: int):
    bias = self.param('bias', nn.initializers.zeros, (self.logits_dimension,))
    return jnp.broadcast_to(bias, (batch_size, self.logits_dimension))


class BaselineEstimator(_common.CannedEstimator):
  """A bias-only model with any head (`tf.estimator.BaselineEstimator`).

  Features are ignored (strings never reach the device), so unlike TF 2.15 it trains with any
  number of feature keys.
  """

  def __init__(self, head, model_dir: str | None = None, optimizer: Any = 'Ftrl',
               config: Any = None):
    def logits_fn(features, labels, mode):
      return Baseline(head.logits_dimension, name='baseline')(
          _common.batch_size(features, labels))

    opt = _common.resolve_optimizer(optimizer, optimizers_lib.BASELINE_LEARNING_RATE)
    super().__init__(head, logits_fn, opt, (), model_dir, config)


class BaselineClassifier(BaselineEstimator):
  """Predicts the class prior (`tf.estimator.BaselineClassifier`).

  `auc_thresholds` (not in TF) is `BinaryClassHead`'s: 'logit' for rare-event data.
  """

  def __init__(self, model_dir: str | None = None, n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None, optimizer: Any = 'Ftrl',
               config: Any = None, loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               auc_thresholds: Any = None):
    head = _common.classifier_head(n_classes, weight_column, label_vocabulary, loss_reduction,
                                   auc_thresholds)
    super().__init__(head, model_dir, optimizer, config)


class BaselineRegressor(BaselineEstimator):
  """Predicts the label mean (`tf.estimator.BaselineRegressor`)."""

  def __init__(self, model_dir: str | None = None, label_dimension: int = 1,
               weight_column: Any = None, optimizer: Any = 'Ftrl', config: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE):
    head = _common.regressor_head(label_dimension, weight_column, loss_reduction)
    super().__init__(head, model_dir, optimizer, config)
