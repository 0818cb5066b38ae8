"""TF's `tf.compat.v1` canned estimators: the v1 contract (summed loss, v1 optimizers and rates).

An r1 program (`tf.estimator.*` under TF 1.x, or `tf.compat.v1.estimator.*`) trains with the v1
contract, which differs from v2's in three silent ways; the classes here reproduce it so such a
program ports by changing its imports (`jestimator.compat.v1` re-exports them):

| | v1 (here) | v2 (`jestimator.*Classifier`) |
|---|---|---|
| loss | `loss_reduction=SUM`: summed over the batch ('weighted_sum') | mean (`SUM_OVER_BATCH_SIZE`) |
| optimizer names | `tf.compat.v1.train` optimizers: Adagrad without epsilon, Adam epsilon 1e-8, RMSProp epsilon 1e-10 with its mean square starting at 1 | Keras' (epsilon 1e-7, mean square from 0) |
| default rates | Linear 'Ftrl' 0.2 (min(0.2, 1/sqrt(n)) only for `optimizer=None`); DNN 'Adagrad' 0.05; wide & deep: linear min(0.005, 1/sqrt(n)), DNN **0.001**; Baseline 0.3 | see `jestimator.canned.optimizers` |

At batch 40 the summed loss gives gradients 40 times larger than the mean, so a v1 program run on
the v2 classes trains far more slowly (census deep model: accuracy 0.80 instead of TF's 0.82).
Arguments carry the v1 names and order, including `partitioner` / `input_layer_partitioner`,
which only accept None (jestimator places variables itself; a partitioned layout is asked for
with a `DataParallel` strategy's partitioner), and v1's reduction names ('weighted_sum', ...).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import optax

from jestimator.canned import baseline, dnn, dnn_linear_combined, linear
from jestimator.canned import optimizers as optimizers_lib
from jestimator.canned.heads import LossReduction

__all__ = [
    'BaselineClassifier', 'BaselineRegressor', 'DNNClassifier', 'DNNLinearCombinedClassifier',
    'DNNLinearCombinedRegressor', 'DNNRegressor', 'LinearClassifier', 'LinearRegressor',
    'BASELINE_LEARNING_RATE', 'DNN_LEARNING_RATE', 'LINEAR_LEARNING_RATE',
    'WIDE_AND_DEEP_DNN_LEARNING_RATE', 'WIDE_AND_DEEP_LINEAR_LEARNING_RATE', 'get_optimizer',
    'v1_loss_reduction',
]

LINEAR_LEARNING_RATE = 0.2
"""v1 Linear*: the rate of a string optimizer (and the cap of min(0.2, 1/sqrt(n)) for None)."""
DNN_LEARNING_RATE = 0.05
"""v1 DNN*: the rate of a string optimizer."""
WIDE_AND_DEEP_LINEAR_LEARNING_RATE = 0.005
"""v1 DNNLinearCombined*, linear part: the cap of min(0.005, 1/sqrt(n_linear_columns))."""
WIDE_AND_DEEP_DNN_LEARNING_RATE = 0.001
"""v1 DNNLinearCombined*, DNN part (TF's `dnn_linear_combined._DNN_LEARNING_RATE`)."""
BASELINE_LEARNING_RATE = 0.3
"""v1 Baseline*: the rate of a string optimizer."""

# tf.compat.v1.losses.Reduction names -> the heads' LossReduction.
_V1_REDUCTIONS = {'weighted_sum': LossReduction.SUM, 'weighted_mean': LossReduction.MEAN,
                  'weighted_sum_over_batch_size': LossReduction.SUM_OVER_BATCH_SIZE}
_V1_NAMES = {'adagrad': 'Adagrad', 'adam': 'Adam', 'ftrl': 'Ftrl', 'rmsprop': 'RMSProp',
             'sgd': 'SGD'}


def v1_loss_reduction(reduction: str) -> str:
  """A v1 (`'weighted_sum'`, `'weighted_mean'`, `'weighted_sum_over_batch_size'`) or
  `LossReduction` name as the heads' `LossReduction`; ValueError for the others."""
  if reduction in _V1_REDUCTIONS:
    return _V1_REDUCTIONS[reduction]
  if reduction == 'weighted_sum_by_nonzero_weights':
    raise ValueError("loss_reduction 'weighted_sum_by_nonzero_weights' (SUM_BY_NONZERO_WEIGHTS) "
                     f'is not supported; use one of {sorted(_V1_REDUCTIONS)} or LossReduction.*')
  return LossReduction.validate(reduction)


def get_optimizer(opt: Any, learning_rate: float) -> optax.GradientTransformation:
  """TF's v1 `get_optimizer_instance`: a name gets its `tf.compat.v1.train` optimizer at
  `learning_rate`; an optax transformation, or a callable returning one, is used as it is.

  v1 defaults: `AdagradOptimizer` (initial accumulator 0.1, no epsilon), `AdamOptimizer`
  (epsilon 1e-8), `FtrlOptimizer` (as `ftrl`), `RMSPropOptimizer` (decay 0.9, epsilon 1e-10
  inside the root, mean square initialised to 1), `GradientDescentOptimizer`. Names are
  case-sensitive in TF; here any case is accepted.
  """
  if not isinstance(opt, str):
    return optimizers_lib.get_optimizer(opt)
  name = _V1_NAMES.get(opt.lower())
  if name is None:
    raise ValueError(f'Unsupported optimizer name: {opt!r}. Supported names are: '
                     f'{tuple(sorted(_V1_NAMES.values()))}')
  if name == 'Adagrad':
    return optax.adagrad(learning_rate, initial_accumulator_value=0.1, eps=0.0)
  if name == 'Adam':
    return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)
  if name == 'RMSProp':
    return optax.rmsprop(learning_rate, decay=0.9, eps=1e-10, initial_scale=1.0)
  return optimizers_lib.get_optimizer(name, learning_rate=learning_rate)


def _no_partitioner(value: Any, name: str) -> None:
  if value is not None:
    raise ValueError(f'{name} is not supported (got {value!r:.60}): jestimator places variables '
                     "itself; shard large tables with a DataParallel strategy's partitioner")


def _linear_opt(optimizer: Any, feature_columns: Sequence[Any]) -> optax.GradientTransformation:
  if optimizer is None:  # v1's _get_default_optimizer; a string gets the plain 0.2
    n = len(feature_columns) if isinstance(feature_columns, (list, tuple)) else 1
    return get_optimizer('Ftrl', optimizers_lib.linear_learning_rate(n, LINEAR_LEARNING_RATE))
  return get_optimizer(optimizer, LINEAR_LEARNING_RATE)


class LinearClassifier(linear.LinearClassifier):
  """`tf.compat.v1.estimator.LinearClassifier`: summed loss, v1 Ftrl at 0.2 by default."""

  def __init__(self, feature_columns: Sequence[Any], model_dir: str | None = None,
               n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None, optimizer: Any = 'Ftrl',
               config: Any = None, partitioner: Any = None, warm_start_from: Any = None,
               loss_reduction: str = 'weighted_sum', sparse_combiner: str = 'sum'):
    _no_partitioner(partitioner, 'partitioner')
    super().__init__(feature_columns, model_dir, n_classes, weight_column, label_vocabulary,
                     _linear_opt(optimizer, feature_columns), config, warm_start_from,
                     v1_loss_reduction(loss_reduction), sparse_combiner)


class LinearRegressor(linear.LinearRegressor):
  """`tf.compat.v1.estimator.LinearRegressor`: summed loss, v1 Ftrl at 0.2 by default."""

  def __init__(self, feature_columns: Sequence[Any], model_dir: str | None = None,
               label_dimension: int = 1, weight_column: Any = None, optimizer: Any = 'Ftrl',
               config: Any = None, partitioner: Any = None, warm_start_from: Any = None,
               loss_reduction: str = 'weighted_sum', sparse_combiner: str = 'sum'):
    _no_partitioner(partitioner, 'partitioner')
    super().__init__(feature_columns, model_dir, label_dimension, weight_column,
                     _linear_opt(optimizer, feature_columns), config, warm_start_from,
                     v1_loss_reduction(loss_reduction), sparse_combiner)


class DNNClassifier(dnn.DNNClassifier):
  """`tf.compat.v1.estimator.DNNClassifier`: summed loss, v1 Adagrad at 0.05 by default."""

  def __init__(self, hidden_units: Sequence[int], feature_columns: Sequence[Any],
               model_dir: str | None = None, n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None, optimizer: Any = 'Adagrad',
               activation_fn: Callable = nn.relu, dropout: float | None = None,
               input_layer_partitioner: Any = None, config: Any = None,
               warm_start_from: Any = None, loss_reduction: str = 'weighted_sum',
               batch_norm: bool = False):
    _no_partitioner(input_layer_partitioner, 'input_layer_partitioner')
    super().__init__(hidden_units, feature_columns, model_dir, n_classes, weight_column,
                     label_vocabulary, get_optimizer(optimizer, DNN_LEARNING_RATE),
                     activation_fn, dropout, config, warm_start_from,
                     v1_loss_reduction(loss_reduction), batch_norm)


class DNNRegressor(dnn.DNNRegressor):
  """`tf.compat.v1.estimator.DNNRegressor`: summed loss, v1 Adagrad at 0.05 by default."""

  def __init__(self, hidden_units: Sequence[int], feature_columns: Sequence[Any],
               model_dir: str | None = None, label_dimension: int = 1, weight_column: Any = None,
               optimizer: Any = 'Adagrad', activation_fn: Callable = nn.relu,
               dropout: float | None = None, input_layer_partitioner: Any = None,
               config: Any = None, warm_start_from: Any = None,
               loss_reduction: str = 'weighted_sum', batch_norm: bool = False):
    _no_partitioner(input_layer_partitioner, 'input_layer_partitioner')
    super().__init__(hidden_units, feature_columns, model_dir, label_dimension, weight_column,
                     get_optimizer(optimizer, DNN_LEARNING_RATE), activation_fn, dropout,
                     config, warm_start_from, v1_loss_reduction(loss_reduction),
                     batch_norm)


def _wide_and_deep_opts(linear_optimizer: Any, linear_feature_columns: Any,
                        dnn_optimizer: Any) -> tuple:
  n = len(linear_feature_columns or ()) if isinstance(linear_feature_columns,
                                                     (list, tuple, type(None))) else 1
  lin = get_optimizer(linear_optimizer, optimizers_lib.linear_learning_rate(
      n, WIDE_AND_DEEP_LINEAR_LEARNING_RATE))
  return lin, get_optimizer(dnn_optimizer, WIDE_AND_DEEP_DNN_LEARNING_RATE)


class DNNLinearCombinedClassifier(dnn_linear_combined.DNNLinearCombinedClassifier):
  """`tf.compat.v1.estimator.DNNLinearCombinedClassifier`: summed loss; v1 Ftrl at
  min(0.005, 1/sqrt(n)) for the linear part and v1 Adagrad at 0.001 for the DNN by default."""

  def __init__(self, model_dir: str | None = None,
               linear_feature_columns: Sequence[Any] | None = None,
               linear_optimizer: Any = 'Ftrl',
               dnn_feature_columns: Sequence[Any] | None = None, dnn_optimizer: Any = 'Adagrad',
               dnn_hidden_units: Sequence[int] | None = None,
               dnn_activation_fn: Callable = nn.relu, dnn_dropout: float | None = None,
               n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None,
               input_layer_partitioner: Any = None, config: Any = None,
               warm_start_from: Any = None, loss_reduction: str = 'weighted_sum',
               batch_norm: bool = False, linear_sparse_combiner: str = 'sum'):
    _no_partitioner(input_layer_partitioner, 'input_layer_partitioner')
    lin, deep = _wide_and_deep_opts(linear_optimizer, linear_feature_columns, dnn_optimizer)
    super().__init__(model_dir, linear_feature_columns, lin, dnn_feature_columns, deep,
                     dnn_hidden_units, dnn_activation_fn, dnn_dropout, n_classes, weight_column,
                     label_vocabulary, config, warm_start_from,
                     v1_loss_reduction(loss_reduction), batch_norm,
                     linear_sparse_combiner)


class DNNLinearCombinedRegressor(dnn_linear_combined.DNNLinearCombinedRegressor):
  """`tf.compat.v1.estimator.DNNLinearCombinedRegressor` (defaults as the classifier's)."""

  def __init__(self, model_dir: str | None = None,
               linear_feature_columns: Sequence[Any] | None = None,
               linear_optimizer: Any = 'Ftrl',
               dnn_feature_columns: Sequence[Any] | None = None, dnn_optimizer: Any = 'Adagrad',
               dnn_hidden_units: Sequence[int] | None = None,
               dnn_activation_fn: Callable = nn.relu, dnn_dropout: float | None = None,
               label_dimension: int = 1, weight_column: Any = None,
               input_layer_partitioner: Any = None, config: Any = None,
               warm_start_from: Any = None, loss_reduction: str = 'weighted_sum',
               batch_norm: bool = False, linear_sparse_combiner: str = 'sum'):
    _no_partitioner(input_layer_partitioner, 'input_layer_partitioner')
    lin, deep = _wide_and_deep_opts(linear_optimizer, linear_feature_columns, dnn_optimizer)
    super().__init__(model_dir, linear_feature_columns, lin, dnn_feature_columns, deep,
                     dnn_hidden_units, dnn_activation_fn, dnn_dropout, label_dimension,
                     weight_column, config, warm_start_from,
                     v1_loss_reduction(loss_reduction), batch_norm,
                     linear_sparse_combiner)


class BaselineClassifier(baseline.BaselineClassifier):
  """`tf.compat.v1.estimator.BaselineClassifier`: summed loss, v1 Ftrl at 0.3 by default."""

  def __init__(self, model_dir: str | None = None, n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None, optimizer: Any = 'Ftrl',
               config: Any = None, loss_reduction: str = 'weighted_sum'):
    super().__init__(model_dir, n_classes, weight_column, label_vocabulary,
                     get_optimizer(optimizer, BASELINE_LEARNING_RATE), config,
                     v1_loss_reduction(loss_reduction))


class BaselineRegressor(baseline.BaselineRegressor):
  """`tf.compat.v1.estimator.BaselineRegressor`: summed loss, v1 Ftrl at 0.3 by default."""

  def __init__(self, model_dir: str | None = None, label_dimension: int = 1,
               weight_column: Any = None, optimizer: Any = 'Ftrl', config: Any = None,
               loss_reduction: str = 'weighted_sum'):
    super().__init__(model_dir, label_dimension, weight_column,
                     get_optimizer(optimizer, BASELINE_LEARNING_RATE), config,
                     v1_loss_reduction(loss_reduction))
