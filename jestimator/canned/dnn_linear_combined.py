"""Wide & deep: a linear model and a DNN summed into one logit, each with its own optimizer."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import optax

from jestimator.canned import _common
from jestimator.canned import optimizers as optimizers_lib
from jestimator.canned.dnn import DNN, check_hidden_units
from jestimator.canned.heads import LossReduction
from jestimator.canned.linear import Linear, linear_optimizer
from jestimator.model import train_ops
from jestimator.model.mode_keys import ModeKeys


def combined_optimizer(linear_opt: optax.GradientTransformation | None,
                       dnn_opt: optax.GradientTransformation | None
                       ) -> optax.GradientTransformation:
  """One optax transformation applying `linear_opt` to `params['linear']` and `dnn_opt` to
  `params['dnn']` (disjoint parameter sets, as TF's two optimizers): `train_ops.groups`."""
  transforms = {k: v for k, v in (('linear', linear_opt), ('dnn', dnn_opt)) if v is not None}
  return train_ops.groups(transforms, by={k: f'^params/{k}/' for k in transforms})


class DNNLinearCombinedEstimator(_common.CannedEstimator):
  """Wide & deep with any head (`tf.estimator.DNNLinearCombinedEstimator`).

  `logits = linear(linear_feature_columns) + dnn(dnn_feature_columns)`. The linear part trains
  with `linear_optimizer` (default FTRL at min(0.005, 1/sqrt(n_linear_columns))), the DNN with
  `dnn_optimizer` (default Adagrad at 0.05).
  """

  def __init__(self, head, model_dir: str | None = None,
               linear_feature_columns: Sequence[Any] | None = None,
               linear_optimizer: Any = 'Ftrl',
               dnn_feature_columns: Sequence[Any] | None = None, dnn_optimizer: Any = 'Adagrad',
               dnn_hidden_units: Sequence[int] | None = None,
               dnn_activation_fn: Callable = nn.relu, dnn_dropout: float | None = None,
               config: Any = None, batch_norm: bool = False,
               linear_sparse_combiner: str = 'sum', warm_start_from: Any = None):
    linear_cols = _common.check_columns(linear_feature_columns, 'linear_feature_columns')
    dnn_cols = _common.check_columns(dnn_feature_columns, 'dnn_feature_columns')
    if not linear_cols and not dnn_cols:
      raise ValueError('Either linear_feature_columns or dnn_feature_columns must be defined '
                       '(both are empty)')
    units = check_hidden_units(dnn_hidden_units, 'dnn_hidden_units') if dnn_cols else ()

    def logits_fn(features, labels, mode):
      logits = 0.0
      if dnn_cols:
        logits = DNN(dnn_cols, units, head.logits_dimension, dnn_activation_fn, dnn_dropout,
                     batch_norm, name='dnn')(features, mode == ModeKeys.TRAIN)
      if linear_cols:
        logits = logits + Linear(linear_cols, head.logits_dimension, linear_sparse_combiner,
                                 name='linear')(features)
      return logits

    lin_opt = (linear_optimizer_for(linear_optimizer, len(linear_cols)) if linear_cols else None)
    dnn_opt = (_common.resolve_optimizer(dnn_optimizer, optimizers_lib.DNN_LEARNING_RATE)
               if dnn_cols else None)
    all_cols = tuple(dict.fromkeys(linear_cols + dnn_cols))
    super().__init__(head, logits_fn, combined_optimizer(lin_opt, dnn_opt), all_cols, model_dir,
                     config, warm_start_from)


def linear_optimizer_for(optimizer: Any, n_columns: int) -> optax.GradientTransformation:
  return linear_optimizer(optimizer, n_columns, optimizers_lib.WIDE_AND_DEEP_LINEAR_LEARNING_RATE)


class DNNLinearCombinedClassifier(DNNLinearCombinedEstimator):
  """Wide & deep classifier (`tf.estimator.DNNLinearCombinedClassifier`, v2 arguments).

  `auc_thresholds` (not in TF) is `BinaryClassHead`'s: 'logit' for rare-event data.
  """

  def __init__(self, model_dir: str | None = None,
               linear_feature_columns: Sequence[Any] | None = None,
               linear_optimizer: Any = 'Ftrl',
               dnn_feature_columns: Sequence[Any] | None = None, dnn_optimizer: Any = 'Adagrad',
               dnn_hidden_units: Sequence[int] | None = None,
               dnn_activation_fn: Callable = nn.relu, dnn_dropout: float | None = None,
               n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None, config: Any = None,
               warm_start_from: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               batch_norm: bool = False, linear_sparse_combiner: str = 'sum',
               auc_thresholds: Any = None):
    head = _common.classifier_head(n_classes, weight_column, label_vocabulary, loss_reduction,
                                   auc_thresholds)
    super().__init__(head, model_dir, linear_feature_columns, linear_optimizer,
                     dnn_feature_columns, dnn_optimizer, dnn_hidden_units, dnn_activation_fn,
                     dnn_dropout, config, batch_norm, linear_sparse_combiner, warm_start_from)


class DNNLinearCombinedRegressor(DNNLinearCombinedEstimator):
  """Wide & deep regressor (`tf.estimator.DNNLinearCombinedRegressor`, v2 arguments)."""

  def __init__(self, model_dir: str | None = None,
               linear_feature_columns: Sequence[Any] | None = None,
               linear_optimizer: Any = 'Ftrl',
               dnn_feature_columns: Sequence[Any] | None = None, dnn_optimizer: Any = 'Adagrad',
               dnn_hidden_units: Sequence[int] | None = None,
               dnn_activation_fn: Callable = nn.relu, dnn_dropout: float | None = None,
               label_dimension: int = 1, weight_column: Any = None, config: Any = None,
               warm_start_from: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
               batch_norm: bool = False, linear_sparse_combiner: str = 'sum'):
    head = _common.regressor_head(label_dimension, weight_column, loss_reduction)
    super().__init__(head, model_dir, linear_feature_columns, linear_optimizer,
                     dnn_feature_columns, dnn_optimizer, dnn_hidden_units, dnn_activation_fn,
                     dnn_dropout, config, batch_norm, linear_sparse_combiner, warm_start_from)
