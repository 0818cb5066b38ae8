"""`MultiHead`: several named heads trained on one model (TF's `tf.estimator.MultiHead`)."""
from __future__ import annotations

from typing import Mapping, Sequence

import jax.numpy as jnp

from jestimator.model import export_output
from jestimator.model import metrics as metrics_lib
from jestimator.canned.heads.base import Head
from jestimator.canned.heads.keys import DEFAULT_SERVING_KEY, PREDICT_SERVING_KEY, MetricKeys
from jestimator.model.mode_keys import ModeKeys, check_mode
from jestimator.model.spec import EstimatorSpec


class MultiHead(Head):
  """Combines named heads: `loss = sum_i head_weights[i] * loss_i`.

  Logits are a dict `{head name: [batch, head.logits_dimension]}` or one
  `[batch, sum of logits dimensions]` array, split in head order. Labels are a dict keyed by head
  name. Predictions are keyed `(head name, key)`; eval metrics are every head's own (suffixed
  `/<head name>`) plus `loss/<head name>` (the mean over batches of that head's training loss);
  the Estimator adds the total `loss`. Export signatures: `serving_default` is the first head's,
  each head's signatures appear as `<head>` (its default) and `<head>/<signature>`, and
  `predict` merges every head's predict outputs as `<head>/<key>`.

  Args:
    heads: heads, each with a distinct `name`; the first one serves by default.
    head_weights: optional per-head loss weights (default: all 1).

  Example:
    head = MultiHead([MultiClassHead(3, name='kind'), BinaryClassHead(name='spam')])
    spec = head.create_estimator_spec(features, mode, {'kind': l1, 'spam': l2},
                                      labels={'kind': y1, 'spam': y2}, optimizer=optax.sgd(.1))
  """

  def __init__(self, heads: Sequence[Head], head_weights: Sequence[float] | None = None):
    if not heads:
      raise ValueError(f'MultiHead needs at least one head; got {heads!r}')
    heads = tuple(heads)
    for h in heads:
      if not isinstance(h, Head):
        raise TypeError(f'MultiHead heads must be Head instances; got {type(h).__name__}')
      if h.name is None:
        raise ValueError(f'every head in a MultiHead needs a name; {type(h).__name__} has none')
    names = [h.name for h in heads]
    if len(set(names)) != len(names):
      raise ValueError(f'MultiHead head names must be distinct; got {names}')
    if head_weights is not None and len(head_weights) != len(heads):
      raise ValueError(f'heads and head_weights must have the same length; got {len(heads)} '
                       f'heads and {len(head_weights)} head_weights')
    self._heads = heads
    self._head_weights = tuple(float(w) for w in head_weights) if head_weights else None

  @property
  def heads(self) -> tuple[Head, ...]:
    """The sub-heads, in order."""
    return self._heads

  @property
  def name(self) -> str:
    return '_'.join(h.name for h in self._heads)

  @property
  def logits_dimension(self) -> int:
    return sum(h.logits_dimension for h in self._heads)

  @property
  def loss_reduction(self) -> str:
    reductions = [h.loss_reduction for h in self._heads]
    if len(set(reductions)) > 1:
      raise ValueError(f'the heads of a MultiHead have different loss_reductions: {reductions}')
    return reductions[0]

  def labels_to_ids(self, labels: Mapping[str, object]) -> dict:
    """Host: `{head name: head.labels_to_ids(labels[head name])}`."""
    self._check_labels(labels)
    return {h.name: h.labels_to_ids(labels[h.name]) for h in self._heads}

  def _split_logits(self, logits) -> dict:
    names = [h.name for h in self._heads]
    if isinstance(logits, Mapping):
      missing = [n for n in names if n not in logits]
      if missing:
        raise ValueError(f'logits has no entry for head(s) {missing}; it has {sorted(logits)}')
      return {n: logits[n] for n in names}
    logits = jnp.asarray(logits)
    dims = [h.logits_dimension for h in self._heads]
    if logits.ndim < 2 or logits.shape[-1] != sum(dims):
      raise ValueError(f'cannot split logits of shape {tuple(logits.shape)} among heads with '
                       f'logits dimensions {dims}: the last dimension must be {sum(dims)}')
    out, start = {}, 0
    for h, d in zip(self._heads, dims):
      out[h.name] = logits[..., start:start + d]
      start += d
    return out

  def _check_labels(self, labels) -> None:
    if not isinstance(labels, Mapping):
      raise ValueError('MultiHead labels must be a dict keyed by head name; got '
                       f'{type(labels).__name__}')
    missing = [h.name for h in self._heads if h.name not in labels]
    if missing:
      raise ValueError(f'labels has no entry for head(s) {missing}; it has {sorted(labels)}')

  def _head_losses(self, labels, logits_dict, features, mode) -> list:
    return [h.loss(labels[h.name], logits_dict[h.name], features=features, mode=mode)
            for h in self._heads]

  def _merge_losses(self, losses, regularization_losses):
    weights = self._head_weights or (1.0,) * len(losses)
    total = sum(w * l for w, l in zip(weights, losses))
    if regularization_losses:
      total = total + sum(jnp.asarray(r, jnp.float32) for r in regularization_losses)
    return total

  def loss(self, labels, logits, features=None, mode=None, regularization_losses=None):
    """`sum_i head_weights[i] * head_i.loss(...)` (+ regularization losses)."""
    logits_dict = self._split_logits(logits)
    self._check_labels(labels)
    return self._merge_losses(self._head_losses(labels, logits_dict, features, mode),
                              regularization_losses)

  def predictions(self, logits, keys=None) -> dict:
    """`{(head name, key): array}` of every head's predictions (`keys`: such pairs to keep)."""
    logits_dict = self._split_logits(logits)
    out = {}
    for h in self._heads:
      for k, v in h.predictions(logits_dict[h.name]).items():
        out[(h.name, k)] = v
    if keys:
      unknown = [k for k in keys if k not in out]
      if unknown:
        raise ValueError(f'unknown prediction key(s) {unknown}; valid keys are {sorted(out)}')
      out = {k: out[k] for k in keys}
    return out

  def _loss_key(self, head: Head) -> str:
    return f'{MetricKeys.LOSS}/{head.name}'

  def metrics(self, regularization_losses=None) -> dict:
    """Zero states: `loss/<head>` and every head's own metrics."""
    out = {}
    if regularization_losses:
      out[MetricKeys.LOSS_REGULARIZATION] = metrics_lib.Mean(total=jnp.zeros([]),
                                                             count=jnp.zeros([]))
    for h in self._heads:
      out[self._loss_key(h)] = metrics_lib.Mean(total=jnp.zeros([]), count=jnp.zeros([]))
      out.update(h.metrics())
    return out

  def _batch_states(self, features, logits_dict, labels, regularization_losses) -> dict:
    states = {}
    if regularization_losses:
      states[MetricKeys.LOSS_REGULARIZATION] = metrics_lib.mean(
          sum(jnp.asarray(r, jnp.float32) for r in regularization_losses))
    for h in self._heads:
      states[self._loss_key(h)] = metrics_lib.mean(
          h.loss(labels[h.name], logits_dict[h.name], features=features))
      states.update(h.update_metrics({}, features, logits_dict[h.name], labels[h.name]))
    return states

  def update_metrics(self, eval_metrics, features, logits, labels, mode=None,
                     regularization_losses=None) -> dict:
    """`eval_metrics` merged with this batch's states of every head and `loss/<head>`."""
    del mode
    logits_dict = self._split_logits(logits)
    self._check_labels(labels)
    out = dict(eval_metrics or {})
    for k, s in self._batch_states(features, logits_dict, labels, regularization_losses).items():
      out[k] = out[k].merge(s) if k in out else s
    return out

  def create_estimator_spec(self, features, mode, logits, labels=None, optimizer=None,
                            regularization_losses=None) -> EstimatorSpec:
    """The merged spec (see the class docstring for the export signatures)."""
    check_mode(mode)
    logits_dict = self._split_logits(logits)
    if mode == ModeKeys.PREDICT:
      return EstimatorSpec(mode, predictions=self.predictions(logits_dict),
                           export_outputs=self._merged_export_outputs(features, logits_dict))
    self._check_labels(labels)
    losses = self._head_losses(labels, logits_dict, features, mode)
    loss = self._merge_losses(losses, regularization_losses)
    if mode == ModeKeys.EVAL:
      return EstimatorSpec(mode, loss=loss, eval_metrics=self._batch_states(
          features, logits_dict, labels, regularization_losses))
    if optimizer is None:
      raise ValueError('MultiHead.create_estimator_spec in mode train needs an optimizer (an '
                       'optax GradientTransformation); optimizer is None')
    return EstimatorSpec(mode, loss=loss, optimizer=optimizer)

  def _merged_export_outputs(self, features, logits_dict) -> dict:
    specs = [h.create_estimator_spec(features, ModeKeys.PREDICT, logits_dict[h.name])
             for h in self._heads]
    outputs = {DEFAULT_SERVING_KEY: specs[0].export_outputs[DEFAULT_SERVING_KEY]}
    merged_predict = {}
    for h, spec in zip(self._heads, specs):
      for k, v in spec.export_outputs.items():
        outputs[h.name if k == DEFAULT_SERVING_KEY else f'{h.name}/{k}'] = v
        if k == PREDICT_SERVING_KEY and isinstance(v, export_output.PredictOutput):
          for name, value in v.as_dict().items():
            merged_predict[f'{h.name}/{name}'] = value
    outputs[PREDICT_SERVING_KEY] = export_output.PredictOutput(merged_predict)
    return outputs
