"""The `Head` interface and what the heads share: loss reduction, weights, metrics, the spec.

A head turns a model's logits into a training loss, predictions, streaming eval metrics and export
signatures, exactly as TF v2's `tf.estimator.*Head`. Everything here runs on device (pure jnp),
except `labels_to_ids`, the host-side check and vocabulary lookup of the labels.
"""
from __future__ import annotations

import abc
import inspect
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jestimator import columns
from jestimator.model import metrics as metrics_lib
from jestimator.model import padding
from jestimator.canned.heads.keys import LossReduction, MetricKeys
from jestimator.model.mode_keys import ModeKeys, check_mode
from jestimator.model.spec import EstimatorSpec


class AccuracyBaseline(metrics_lib.Mean):
  """`max(label_mean, 1 - label_mean)`: the accuracy of always predicting the majority class.

  A streaming state holding the weighted label sum (`total`) and weight sum (`count`), so batches
  merge exactly; 0.0 when `count == 0`.
  """

  def result(self) -> jax.Array:
    mean = super().result()
    return jnp.where(self.count == 0, 0.0, jnp.maximum(mean, 1.0 - mean))


def check_loss_fn(loss_fn: Callable[..., Any] | None) -> None:
  """A custom `loss_fn` takes `labels` and `logits`, optionally `features` and `loss_reduction`."""
  if loss_fn is None:
    return
  if not callable(loss_fn):
    raise TypeError(f'loss_fn must be callable, got {type(loss_fn).__name__}')
  args = set(inspect.signature(loss_fn).parameters)
  missing = {'labels', 'logits'} - args
  if missing:
    raise ValueError(f'loss_fn must take arguments labels and logits; it lacks {sorted(missing)} '
                     f'(it takes {sorted(args)})')
  invalid = args - {'labels', 'logits', 'features', 'loss_reduction'}
  if invalid:
    raise ValueError(f'loss_fn has unexpected argument(s) {sorted(invalid)}; allowed are labels, '
                     'logits, features, loss_reduction')


def check_thresholds(thresholds: Sequence[float] | None) -> tuple[float, ...]:
  """Thresholds as a tuple of floats, each in the open interval (0, 1)."""
  out = tuple(float(t) for t in thresholds) if thresholds else ()
  bad = [t for t in out if not 0.0 < t < 1.0]
  if bad:
    raise ValueError(f'thresholds must lie in (0, 1); got {bad} in {list(out)}')
  return out


def check_auc_thresholds(auc_thresholds: Any) -> tuple[float, ...] | None:
  """A head's `auc_thresholds`: None (TF's 200 evenly spaced), 'logit' or explicit thresholds.

  'logit' is `metrics.logit_thresholds()`: right for rare-event (CTR-like) models whose scores
  sit in a narrow range, where TF's thresholds make the AUC meaningless (0.5).
  """
  if auc_thresholds is None:
    return None
  if isinstance(auc_thresholds, str):
    if auc_thresholds != 'logit':
      raise ValueError(f"auc_thresholds must be None, 'logit' or a list of floats in [0, 1]; got "
                       f'{auc_thresholds!r}')
    return tuple(float(t) for t in metrics_lib.logit_thresholds())
  return metrics_lib.check_inner_thresholds(auc_thresholds, 'auc_thresholds')


def check_weight_column(weight_column: Any) -> Any:
  """`weight_column` if it is None, a feature key or a `numeric_column` (TF's rule), else raises."""
  if weight_column is None or isinstance(weight_column, (str, columns.NumericColumn)):
    return weight_column
  raise TypeError('weight_column must be a feature key (str) or a numeric_column; got '
                  f'{type(weight_column).__name__}: {weight_column!r:.80}')


def _column_key(weight_column: Any) -> str:
  return weight_column if isinstance(weight_column, str) else weight_column.key


def weight_values(weight_column: Any, features: Any) -> jax.Array:
  """The example weights of `weight_column` from `features`, as TF's heads read them.

  A feature key reads the feature as it is. A `numeric_column` is applied as TF applies it: its
  missing values (NaN) take `default_value`, the values take its `shape` and its normalizer
  (`normalizer_fn` or z-score) runs; the result is `[batch, prod(shape)]`.
  """
  key = _column_key(weight_column)
  if not isinstance(features, Mapping) or key not in features:
    have = sorted(features) if isinstance(features, Mapping) else type(features).__name__
    raise ValueError(f'weight_column {key!r} is missing from the features (have {have})')
  w = jnp.asarray(features[key], jnp.float32)
  if isinstance(weight_column, str):
    return w
  w = weight_column.dense_values(w, 'weight_column', fill_missing=True)
  return w.reshape(w.shape[0], weight_column.output_dim)


class Head(abc.ABC):
  """Interface of a head (TF's `tf.estimator.Head`), implemented by every head here.

  Properties: `name` (suffix of metric keys, or None), `logits_dimension`, `loss_reduction`.
  """

  @property
  @abc.abstractmethod
  def name(self) -> str | None:
    """The head's name: metric keys get a `/<name>` suffix; required inside a `MultiHead`."""

  @property
  @abc.abstractmethod
  def logits_dimension(self) -> int:
    """Size of the last dimension of the logits this head expects."""

  @property
  @abc.abstractmethod
  def loss_reduction(self) -> str:
    """One of `LossReduction` (never NONE)."""

  @abc.abstractmethod
  def loss(self, labels, logits, features=None, mode=None, regularization_losses=None):
    """The reduced (scalar) training loss, plus the sum of `regularization_losses` if given."""

  @abc.abstractmethod
  def predictions(self, logits, keys=None) -> dict:
    """`{key: device array}` computed from `logits` (all keys, or only `keys`)."""

  @abc.abstractmethod
  def metrics(self, regularization_losses=None) -> dict:
    """`{key: zero metric state}` for every eval metric the head reports."""

  @abc.abstractmethod
  def update_metrics(self, eval_metrics, features, logits, labels, mode=None,
                     regularization_losses=None) -> dict:
    """`eval_metrics` with this batch merged in (keys not yet present are added)."""

  @abc.abstractmethod
  def create_estimator_spec(self, features, mode, logits, labels=None, optimizer=None,
                            regularization_losses=None) -> EstimatorSpec:
    """The `EstimatorSpec` for `mode`, so a `model_fn` can end with `return head.create_...`."""

  def labels_to_ids(self, labels):
    """Host-side check (and, for class heads, vocabulary lookup) of one batch of labels.

    The default returns the labels as a numpy array unchanged; class heads override it.
    """
    return np.asarray(labels)


class SingleHead(Head):
  """Shared implementation of the single-task heads.

  A subclass sets `_name`, `_weight_column`, `_loss_reduction`, `_loss_fn`, and implements
  `logits_dimension`, `_process_labels`, `_unweighted_loss`, `predictions`,
  `_batch_metric_states` and `_predict_spec`.
  """
  _name: str | None = None
  _weight_column: Any = None
  _loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE
  _loss_fn: Callable[..., Any] | None = None
  _allow_per_logit_weights = False
  _loss_dimension = 1  # last dimension of the unweighted loss

  @property
  def name(self):
    return self._name

  @property
  def loss_reduction(self):
    return self._loss_reduction

  @property
  def weight_column(self):
    """The `weight_column` given to the constructor (a feature key, a numeric column, or None)."""
    return self._weight_column

  def _summary_key(self, key: str) -> str:
    return f'{key}/{self._name}' if self._name else key

  # -- shapes ---------------------------------------------------------------------------------

  def _check_logits(self, logits) -> jax.Array:
    logits = jnp.asarray(logits)
    dim = self.logits_dimension
    if logits.ndim == 1 and dim == 1:
      logits = logits[:, None]  # [batch] logits of a single-logit head
    if logits.ndim < 2 or logits.shape[-1] != dim:
      raise ValueError(f'{type(self).__name__}: logits must have shape [batch, {dim}], got '
                       f'{tuple(logits.shape)}')
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))

  def _labels_matching(self, labels, logits, dim: int) -> jax.Array:
    """Labels as `[batch, dim]`, accepting `[batch]` when `dim == 1`."""
    if labels is None:
      raise ValueError(f'{type(self).__name__}: labels must be given in modes train and eval '
                       '(labels is None)')
    labels = jnp.asarray(labels)
    if labels.ndim == logits.ndim - 1 and dim == 1:
      labels = labels[..., None]
    if labels.shape != logits.shape[:-1] + (dim,):
      raise ValueError(f'{type(self).__name__}: labels must have shape '
                       f'{list(logits.shape[:-1]) + [dim]}'
                       + (f' (or {list(logits.shape[:-1])})' if dim == 1 else '')
                       + f' to match logits of shape {tuple(logits.shape)}; got '
                       f'{tuple(labels.shape)}')
    return labels

  def _weights(self, features, logits) -> jax.Array | None:
    """Example weights from `features[weight_column]` as `[batch, 1]` (or `[batch, dim]`)."""
    if self._weight_column is None:
      return None
    key = _column_key(self._weight_column)
    w = weight_values(self._weight_column, features)
    batch = logits.shape[:-1]
    if w.shape == batch:
      return w[..., None]
    if w.shape == batch + (1,):
      return w
    if self._allow_per_logit_weights and w.shape == logits.shape:
      return w
    allowed = [list(batch), list(batch) + [1]] + (
        [list(logits.shape)] if self._allow_per_logit_weights else [])
    raise ValueError(f'weight_column {key!r} must have shape {" or ".join(map(str, allowed))}; '
                     f'got {list(w.shape)}')

  # -- loss -----------------------------------------------------------------------------------

  def _call_loss_fn(self, labels, logits, features) -> jax.Array:
    args = set(inspect.signature(self._loss_fn).parameters)
    kwargs = {}
    if 'features' in args:
      kwargs['features'] = features
    if 'loss_reduction' in args:
      kwargs['loss_reduction'] = self._loss_reduction
    loss = jnp.asarray(self._loss_fn(labels=labels, logits=logits, **kwargs))
    expected = logits.shape[:-1] + (self._loss_dimension,)
    if loss.shape == expected[:-1] and self._loss_dimension == 1:
      loss = loss[..., None]
    if loss.shape != expected:
      raise ValueError(f'loss_fn must return the unreduced loss of shape {list(expected)}; '
                       f'got {list(loss.shape)}')
    return loss

  def _loss_and_weights(self, labels, logits, features):
    """(unweighted loss `[batch, k]`, weights or None) from processed labels and checked logits."""
    if self._loss_fn is not None:
      unweighted = self._call_loss_fn(labels, logits, features)
    else:
      unweighted = self._unweighted_loss(labels, logits)
    return unweighted.astype(jnp.float32), self._weights(features, logits)

  def _reduce(self, unweighted: jax.Array, weights: jax.Array | None) -> jax.Array:
    """TF's `compute_weighted_loss`, with padding rows weighted 0 and not counted."""
    w = jnp.ones(unweighted.shape[:-1] + (1,), jnp.float32) if weights is None else weights
    mask = padding.example_mask()  # declares this loss padding-aware, which it is
    n_examples = unweighted.shape[0]
    if mask is not None:
      mask = jnp.asarray(mask, jnp.float32)
      w = w * mask.reshape(mask.shape + (1,) * (w.ndim - 1))
      n_examples = jnp.sum(mask)
    w = jnp.broadcast_to(w, unweighted.shape)
    total = jnp.sum(unweighted * w)
    if self._loss_reduction == LossReduction.SUM:
      return total
    if self._loss_reduction == LossReduction.MEAN:
      denominator = jnp.sum(w)
    else:  # SUM_OVER_BATCH_SIZE and AUTO: the number of (real) loss elements.
      denominator = n_examples * (unweighted.size // max(unweighted.shape[0], 1))
    return jnp.where(denominator == 0, 0.0, total / jnp.where(denominator == 0, 1.0, denominator))

  def loss(self, labels, logits, features=None, mode=None, regularization_losses=None):
    """The reduced training loss (a scalar; see `LossReduction`).

    Args:
      labels: `[batch, d]` (or `[batch]` when the head takes one label per example), numeric:
        string labels must be mapped with `labels_to_ids` on the host first.
      logits: `[batch, logits_dimension]`.
      features: dict of features; `features[weight_column]` (`[batch]` or `[batch, 1]`) weights
        each example's loss.
      mode: unused (TF's signature).
      regularization_losses: optional list of scalars added after the reduction.
    """
    del mode
    logits = self._check_logits(logits)
    labels = self._process_labels(labels, logits)
    unweighted, weights = self._loss_and_weights(labels, logits, features)
    loss = self._reduce(unweighted, weights)
    if regularization_losses:
      loss = loss + sum(jnp.asarray(r, jnp.float32) for r in regularization_losses)
    return loss

  # -- metrics --------------------------------------------------------------------------------

  def _all_metric_states(self, labels, logits, features, regularization_losses):
    unweighted, weights = self._loss_and_weights(labels, logits, features)
    states = self._batch_metric_states(labels, logits, unweighted, weights)
    if regularization_losses:
      states[self._summary_key(MetricKeys.LOSS_REGULARIZATION)] = metrics_lib.mean(
          sum(jnp.asarray(r, jnp.float32) for r in regularization_losses))
    return states

  def metrics(self, regularization_losses=None) -> dict:
    """`{key: metric state}` of all this head's metrics, with every sum zero (merge identity).

    Keys are TF's, suffixed with `/<name>` for a named head; `loss` and `global_step` are added
    by the Estimator, not here.
    """
    logits = jnp.zeros((1, self.logits_dimension), jnp.float32)
    labels = self._dummy_labels(logits)
    features = None
    if self._weight_column is not None:
      shape = getattr(self._weight_column, 'shape', ())
      features = {_column_key(self._weight_column): jnp.ones((1,) + shape, jnp.float32)}
    regs = [0.0] if regularization_losses else None

    def dummy_states():
      with padding.mask_scope(None):  # a one-row dummy batch, whatever step is being traced
        return self._all_metric_states(labels, logits, features, regs)

    # Only the structure and shapes matter: trace abstractly (no computation, no compilation).
    shapes = jax.eval_shape(dummy_states)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def update_metrics(self, eval_metrics, features, logits, labels, mode=None,
                     regularization_losses=None) -> dict:
    """Returns `eval_metrics` (a dict of states, may be empty) merged with this batch's states.

    The batch states are weighted by `weight_column` and by the padding mask of the step.
    """
    del mode
    logits = self._check_logits(logits)
    labels = self._process_labels(labels, logits)
    batch = self._all_metric_states(labels, logits, features, regularization_losses)
    out = dict(eval_metrics or {})
    for key, state in batch.items():
      out[key] = out[key].merge(state) if key in out else state
    return out

  # -- spec -----------------------------------------------------------------------------------

  def create_estimator_spec(self, features, mode, logits, labels=None, optimizer=None,
                            regularization_losses=None) -> EstimatorSpec:
    """The `EstimatorSpec` of this head for `mode`.

    * PREDICT: `predictions` (device arrays), `export_outputs` and `string_outputs` (TF's
      string predictions such as `classes`, made on the host).
    * EVAL: the training `loss` and `eval_metrics` (this batch's states).
    * TRAIN: the training `loss` and `optimizer` (an optax GradientTransformation, required).
    """
    check_mode(mode)
    logits = self._check_logits(logits)
    if mode == ModeKeys.PREDICT:
      return self._predict_spec(logits)
    loss = self.loss(labels, logits, features=features, mode=mode,
                     regularization_losses=regularization_losses)
    if mode == ModeKeys.EVAL:
      labels = self._process_labels(labels, logits)
      return EstimatorSpec(mode, loss=loss, eval_metrics=self._all_metric_states(
          labels, logits, features, regularization_losses))
    if optimizer is None:
      raise ValueError(f'{type(self).__name__}.create_estimator_spec in mode train needs an '
                       'optimizer (an optax GradientTransformation); optimizer is None')
    return EstimatorSpec(mode, loss=loss, optimizer=optimizer)

  # -- subclass hooks -------------------------------------------------------------------------

  @abc.abstractmethod
  def _process_labels(self, labels, logits) -> jax.Array:
    """Device labels in the form the loss and metrics use (shape-checked)."""

  @abc.abstractmethod
  def _dummy_labels(self, logits) -> jax.Array:
    """Valid labels for a one-row dummy batch (to build zero metric states)."""

  @abc.abstractmethod
  def _unweighted_loss(self, labels, logits) -> jax.Array:
    """The default per-example loss, `[batch, self._loss_dimension]`."""

  @abc.abstractmethod
  def _batch_metric_states(self, labels, logits, unweighted_loss, weights) -> dict:
    """This batch's metric states, keyed as TF (suffixed with the head name)."""

  @abc.abstractmethod
  def _predict_spec(self, logits) -> EstimatorSpec:
    """The PREDICT spec: predictions, export outputs, string outputs."""


def check_prediction_keys(keys, valid: Sequence[str], host_only: Sequence[str] = ()) -> tuple:
  """`keys` (or all `valid` keys when None) after checking each is known."""
  if not keys:
    return tuple(valid)
  keys = (keys,) if isinstance(keys, str) else tuple(keys)
  for k in keys:
    if k in host_only:
      ids = 'class_ids' if k == 'classes' else 'all_class_ids'
      raise ValueError(f'prediction key {k!r} holds strings, which JAX arrays cannot: the '
                       'Estimator makes it on the host from the ids '
                       f'(EstimatorSpec.string_outputs); ask for {ids!r} instead')
    if k not in valid:
      raise ValueError(f'unknown prediction key {k!r}; valid keys are {list(valid)}')
  return keys
