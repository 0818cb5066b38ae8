"""DNN estimators: a feed-forward network over dense feature columns."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn

from jestimator import columns
from jestimator.model import summary
from jestimator.canned import _common
from jestimator.canned import optimizers as optimizers_lib
from jestimator.canned.heads import LossReduction
from jestimator.model.mode_keys import ModeKeys


class DNN(nn.Module):
  """`DenseFeatures` -> hidden layers -> logits, as TF's `dnn` logit function.

  Each hidden layer is Dense(glorot_uniform) + activation, then Dropout (TRAIN only; `dropout`
  is the drop probability), then BatchNorm(momentum=0.999) when `batch_norm`. Parameters are
  named `hiddenlayer_<i>/{kernel,bias}` and `logits/{kernel,bias}`. As TF, in training each
  hidden layer's output and the logits write summaries
  `<name>/hiddenlayer_<i>/fraction_of_zero_values` (scalar) and `<name>/hiddenlayer_<i>/activation`
  (histogram), `<name>/logits/...` likewise; evaluation writes only metrics, as TF's did.
  """
  feature_columns: tuple
  hidden_units: tuple[int, ...]
  logits_dimension: int
  activation_fn: Callable = nn.relu
  dropout: float | None = None
  batch_norm: bool = False

  @nn.compact
  def __call__(self, features, training: bool):
    net = columns.DenseFeatures(self.feature_columns, name='input_layer')(features)
    for i, units in enumerate(self.hidden_units):
      net = nn.Dense(units, kernel_init=nn.initializers.glorot_uniform(),
                     name=f'hiddenlayer_{i}')(net)
      net = self.activation_fn(net)
      if self.dropout:
        net = nn.Dropout(self.dropout, deterministic=not training)(net)
      if self.batch_norm:
        net = nn.BatchNorm(use_running_average=not training, momentum=0.999,
                           name=f'batchnorm_{i}')(net)
      if training:
        _layer_summary(net, f'{self.name or "dnn"}/hiddenlayer_{i}')
    logits = nn.Dense(self.logits_dimension, kernel_init=nn.initializers.glorot_uniform(),
                      name='logits')(net)
    if training:
      _layer_summary(logits, f'{self.name or "dnn"}/logits')
    return logits


def _layer_summary(value, tag: str) -> None:
  """TF's `_add_hidden_layer_summary` (computed only in the steps that write summaries)."""
  summary.zero_fraction_scalar(f'{tag}/fraction_of_zero_values', value)
  summary.histogram(f'{tag}/activation', value)


def check_hidden_units(hidden_units: Any, what: str = 'hidden_units') -> tuple[int, ...]:
  if hidden_units is None or len(hidden_units) == 0:
    raise ValueError(f'{what} must be a non-empty list of layer sizes, got {hidden_units!r}')
  units = tuple(int(u) for u in hidden_units)
  if any(u <= 0 for u in units):
    raise ValueError(f'{what} must be positive, got {list(hidden_units)}')
  return units


def dnn_logits_fn(head, hidden_units, feature_columns, activation_fn, dropout, batch_norm):
  """`logits_fn(features, labels, mode)` of a DNN for `head`."""
  units = check_hidden_units(hidden_units)
  cols = _common.check_columns(feature_columns, 'feature_columns')
  if not cols:
    raise ValueError('feature_columns must not be empty')

  def logits_fn(features, labels, mode):
    return DNN(cols, units, head.logits_dimension, activation_fn, dropout, batch_norm,
               name='dnn')(features, mode == ModeKeys.TRAIN)

  return logits_fn, cols


class DNNEstimator(_common.CannedEstimator):
  """A DNN with any head (`tf.estimator.DNNEstimator`)."""

  def __init__(self, head, hidden_units: Sequence[int], feature_columns: Sequence[Any],
               model_dir: str | None = None, optimizer: Any = 'Adagrad',
               activation_fn: Callable = nn.relu, dropout: float | None = None,
               config: Any = None, warm_start_from: Any = None, batch_norm: bool = False):
    logits_fn, cols = dnn_logits_fn(head, hidden_units, feature_columns, activation_fn, dropout,
                                    batch_norm)
    opt = _common.resolve_optimizer(optimizer, optimizers_lib.DNN_LEARNING_RATE)
    super().__init__(head, logits_fn, opt, cols, model_dir, config, warm_start_from)


class DNNClassifier(DNNEstimator):
  """A DNN classifier (`tf.estimator.DNNClassifier`, v2 arguments and defaults).

  `auc_thresholds` (not in TF) is `BinaryClassHead`'s: 'logit' for rare-event data.

  Example:
    est = DNNClassifier(hidden_units=[64, 32], feature_columns=cols, n_classes=2)
    est.train(input_fn, max_steps=1000)
  """

  def __init__(self, hidden_units: Sequence[int], feature_columns: Sequence[Any],
               model_dir: str | None = None, n_classes: int = 2, weight_column: Any = None,
               label_vocabulary: Sequence[str] | None = None, optimizer: Any = 'Adagrad',
               activation_fn: Callable = nn.relu, dropout: float | None = None,
               config: Any = None, warm_start_from: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, batch_norm: bool = False,
               auc_thresholds: Any = None):
    head = _common.classifier_head(n_classes, weight_column, label_vocabulary, loss_reduction,
                                   auc_thresholds)
    super().__init__(head, hidden_units, feature_columns, model_dir, optimizer, activation_fn,
                     dropout, config, warm_start_from, batch_norm)


class DNNRegressor(DNNEstimator):
  """A DNN regressor (`tf.estimator.DNNRegressor`, v2 arguments and defaults)."""

  def __init__(self, hidden_units: Sequence[int], feature_columns: Sequence[Any],
               model_dir: str | None = None, label_dimension: int = 1, weight_column: Any = None,
               optimizer: Any = 'Adagrad', activation_fn: Callable = nn.relu,
               dropout: float | None = None, config: Any = None, warm_start_from: Any = None,
               loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, batch_norm: bool = False):
    head = _common.regressor_head(label_dimension, weight_column, loss_reduction)
    super().__init__(head, hidden_units, feature_columns, model_dir, optimizer, activation_fn,
                     dropout, config, warm_start_from, batch_norm)
