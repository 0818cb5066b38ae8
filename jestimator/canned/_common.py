"""What every canned estimator shares: head choice, optimizer resolution, the model_fn shell."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax.numpy as jnp
import optax

from jestimator.model import padding
from jestimator.canned import heads as heads_lib
from jestimator.canned import optimizers as optimizers_lib
from jestimator.driver.estimator import Estimator
from jestimator.model.mode_keys import ModeKeys


def classifier_head(n_classes: int, weight_column: Any, label_vocabulary: Any,
                    loss_reduction: str, auc_thresholds: Any = None) -> heads_lib.Head:
  """`BinaryClassHead` for 2 classes, `MultiClassHead` otherwise (TF's rule).

  `auc_thresholds`: the binary head's choice (None: TF's 200; 'logit'; explicit thresholds); a
  multi-class head reports no AUC, so it takes none.
  """
  if not isinstance(n_classes, int) or n_classes < 2:
    raise ValueError(f'n_classes must be an int >= 2, got {n_classes!r}')
  if n_classes == 2:
    return heads_lib.BinaryClassHead(weight_column=weight_column,
                                     label_vocabulary=label_vocabulary,
                                     loss_reduction=loss_reduction,
                                     auc_thresholds=auc_thresholds)
  if auc_thresholds is not None:
    raise ValueError(f'auc_thresholds={auc_thresholds!r} is for n_classes=2 (AUC metrics); a '
                     f'{n_classes}-class classifier reports none')
  return heads_lib.MultiClassHead(n_classes, weight_column=weight_column,
                                  label_vocabulary=label_vocabulary,
                                  loss_reduction=loss_reduction)


def regressor_head(label_dimension: int, weight_column: Any,
                   loss_reduction: str) -> heads_lib.Head:
  return heads_lib.RegressionHead(label_dimension=label_dimension, weight_column=weight_column,
                                  loss_reduction=loss_reduction)


def check_columns(feature_columns: Any, what: str) -> tuple:
  if feature_columns is None:
    return ()
  if not isinstance(feature_columns, (list, tuple)):
    feature_columns = [feature_columns]
  return tuple(feature_columns)


def batch_size(features, labels) -> int:
  """The batch size of a step, also when no feature reaches the device (Baseline)."""
  for tree in (features, labels):
    if isinstance(tree, dict):
      for v in tree.values():
        return jnp.shape(v)[0]
    elif tree is not None:
      return jnp.shape(tree)[0]
  mask = padding.current_mask()
  if mask is None:
    raise ValueError('cannot tell the batch size: no features, labels or example mask')
  return mask.shape[0]


class CannedEstimator(Estimator):
  """An `Estimator` whose model_fn is `head.create_estimator_spec(logits_fn(...))`.

  Canned estimators only build a model_fn (the paper's "dogfooding"): `logits_fn(features,
  labels, mode)` runs inside the model_fn's Flax context and returns the logits; the head turns
  them into loss, metrics, predictions and export outputs.
  """

  def __init__(self, head: heads_lib.Head, logits_fn: Callable, optimizer: optax.GradientTransformation,
               feature_columns: Sequence[Any] | None, model_dir: str | None, config: Any,
               warm_start_from: Any = None):
    self._head = head

    def model_fn(features, labels, mode):
      logits = logits_fn(features, labels, mode)
      return head.create_estimator_spec(features, mode, logits, labels,
                                        optimizer=optimizer if mode == ModeKeys.TRAIN else None)

    super().__init__(model_fn, model_dir=model_dir, config=config,
                     warm_start_from=warm_start_from,
                     feature_columns=list(feature_columns or ()),
                     label_transform=head.labels_to_ids)

  @property
  def head(self) -> heads_lib.Head:
    return self._head


def resolve_optimizer(optimizer: Any, default_learning_rate: float
                      ) -> optax.GradientTransformation:
  return optimizers_lib.get_optimizer(optimizer, default_learning_rate=default_learning_rate)
