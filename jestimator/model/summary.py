"""Summaries from inside a `model_fn`: `scalar(name, value)` and `histogram(name, values)`.

The equivalents of `tf.summary.scalar` / `tf.summary.histogram` in a TF1 `model_fn`. Call them
anywhere inside a `model_fn` (or a Flax module it calls), in TRAIN and EVAL:

  def model_fn(features, labels, mode):
    hidden = nn.relu(nn.Dense(32)(features['x']))
    jestimator.summary.scalar('hidden/fraction_of_zero_values', jestimator.summary.zero_fraction(hidden))
    jestimator.summary.histogram('hidden/activation', hidden)
    ...

They are collected while the step is traced and returned as step outputs, so nothing syncs the
device: TRAIN summaries are fetched and written to `model_dir` only every
`RunConfig.save_summary_steps`; EVAL summaries are aggregated over the whole evaluation (the mean
of the per-batch values for scalars, the merged histogram for histograms) and written to the eval
directory at the global step. Outside a step that collects them (say `ModelFn.init`) both calls
do nothing, like `tf.summary` without a default writer.

Padding: a padding-aware model_fn (one that calls `jestimator.example_mask()`) gets its short
final eval batch padded; `histogram` and `zero_fraction` leave the padded rows out by themselves,
but a scalar is the model_fn's own value, so weight it by the mask as the loss is.

Histograms are computed on the device into TF's fixed default buckets (`bucket_limits()`), so
the histograms of several batches or replicas merge exactly (`Histogram.merge`).

JAX-specific: the values are collected at trace time, so a call inside a Flax lifted transform
(`nn.scan`, `nn.remat`, `nn.vmap` bodies) is not supported (JAX reports a leaked tracer): sow the
value out of the transform and call `scalar` / `histogram` outside it.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
from typing import Any, Iterator, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jestimator.model import padding
from jestimator.model.metric_states import Mean, Metric

# Key of the summary states inside the eval step's `{name: metric state}` dict.
EVAL_KEY = '_summaries'
_NAME = re.compile(r'^[A-Za-z0-9_.\-/]+$')


class Collector:
  """What one trace of a model_fn produced: summaries and tensors of `LoggingTensorHook`s."""

  def __init__(self):
    self.scalars: dict[str, jax.Array] = {}
    self.histograms: dict[str, jax.Array] = {}
    self.tensors: dict[str, jax.Array] = {}
    # Scalars computed only where the summaries are (`zero_fraction_scalar`): (values, weights).
    self.zero_fractions: dict[str, tuple[jax.Array, jax.Array | None]] = {}
    self._hooks = 0

  def next_hook_index(self) -> int:
    """A per-trace index: the k-th hook of every trace of the same model_fn gets the same one."""
    self._hooks += 1
    return self._hooks - 1

  @property
  def empty(self) -> bool:
    """True when the model_fn wrote no summary and built no `LoggingTensorHook`."""
    return not (self.scalars or self.histograms or self.tensors or self.zero_fractions)

  def outputs(self) -> dict[str, dict[str, jax.Array]]:
    """`{'scalars': ..., 'histograms': Histogram states, 'tensors': ...}` (step outputs)."""
    return outputs_of(self.raw())

  def raw(self) -> dict[str, dict[str, Any]]:
    """As `outputs` with each histogram still its `(values, [batch] mask or None)` (as each
    deferred zero fraction): `outputs_of` turns it
    into the outputs, so a step can compute the histograms only when they are asked for."""
    return {'scalars': dict(self.scalars), 'histograms': dict(self.histograms),
            'tensors': dict(self.tensors), 'zero_fractions': dict(self.zero_fractions)}


def outputs_of(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """The step outputs of a `Collector.raw()`: its histograms and deferred zero fractions
  computed (`histogram_states`, `zero_fraction`)."""
  scalars = dict(raw['scalars'])
  scalars.update({k: _zero_fraction(v, _broadcast(v, m))
                  for k, (v, m) in raw['zero_fractions'].items()})
  histograms = {k: (v, _broadcast(v, m)) for k, (v, m) in raw['histograms'].items()}
  return {'scalars': scalars, 'histograms': histogram_states(histograms),
          'tensors': dict(raw['tensors'])}


class Packing:
  """A step's summary scalars and histograms as one float32 vector, and back on the host.

  Every output array of a compiled step costs the dispatch a few microseconds (a canned DNN's
  summaries are ~20 arrays, a third of its ~0.3 ms CPU step); one vector costs one. The layout
  (names and shapes) is recorded when the step is traced; it depends only on the model_fn's
  summary names, so every trace of one model_fn records the same one. Hook tensors (whose shapes
  may follow the batch) are not packed.
  """

  def __init__(self):
    self._layout: tuple[Any, list[tuple[int, ...]]] | None = None

  def pack(self, outputs: Mapping[str, Any]) -> jax.Array:
    """The scalars and histograms of step `outputs` (traced), raveled into one float32 vector."""
    leaves, treedef = jax.tree.flatten({'scalars': outputs['scalars'],
                                        'histograms': outputs['histograms']})
    self._layout = (treedef, [tuple(jnp.shape(x)) for x in leaves])
    if not leaves:
      return jnp.zeros((0,), jnp.float32)
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])

  def unpack(self, vector: np.ndarray) -> dict[str, Any]:
    """`{'scalars', 'histograms'}` (numpy leaves) of a packed vector fetched to the host."""
    if self._layout is None:
      raise RuntimeError('Packing.unpack before any step was traced with this packing')
    treedef, shapes = self._layout
    vector = np.asarray(vector)
    ends = np.cumsum([math.prod(shape) for shape in shapes], dtype=np.int64)
    if vector.shape != (int(ends[-1]) if len(ends) else 0,):
      raise ValueError(f'packed summaries of shape {vector.shape} do not match the traced layout '
                       f'of {len(shapes)} values')
    parts = np.split(vector, ends[:-1]) if len(ends) else []
    return jax.tree.unflatten(treedef, [p.reshape(shape) for p, shape in zip(parts, shapes)])


_ACTIVE: contextvars.ContextVar[Collector | None] = contextvars.ContextVar(
    'jestimator_summary_collector', default=None)


@contextlib.contextmanager
def collecting() -> Iterator[Collector]:
  """Collects the summaries of the model_fn calls made inside the block (used by the steps)."""
  collector = Collector()
  token = _ACTIVE.set(collector)
  try:
    yield collector
  finally:
    _ACTIVE.reset(token)


def active() -> Collector | None:
  """The collector of the step being traced, or None."""
  return _ACTIVE.get()


def _check_name(name: str, kind: str, c: Collector):
  if not isinstance(name, str) or not _NAME.match(name):
    raise ValueError(f'summary.{kind} name must be a non-empty string of letters, digits and '
                     f'"_.-/", got {name!r}')
  if name in c.scalars or name in c.histograms or name in c.zero_fractions:
    raise ValueError(f'summary name {name!r} is written twice in one model_fn call; names must '
                     'be unique (scalars and histograms share one namespace)')


def scalar(name: str, value: Any) -> None:
  """Records a scalar summary `name` (TRAIN: its value at the step; EVAL: mean over batches).

  Args:
    name: the TensorBoard tag, e.g. 'dnn/hiddenlayer_0/fraction_of_zero_values'.
    value: a number or a 0-d array (reduce larger arrays first, e.g. with `jnp.mean`).
  """
  c = _ACTIVE.get()
  if c is None:
    return
  _check_name(name, 'scalar', c)
  value = jnp.asarray(value)
  if value.ndim != 0:
    raise ValueError(f'summary.scalar({name!r}) needs a scalar, got shape {value.shape}; '
                     'reduce it first (e.g. jnp.mean) or use summary.histogram')
  c.scalars[name] = value.astype(jnp.float32)


def histogram(name: str, values: Any) -> None:
  """Records a histogram summary of `values` (any shape; non-finite values are not counted).

  TRAIN: the values of the step; EVAL: all values of the evaluation, merged over batches. When
  the leading axis is the batch, rows that only pad a short final batch are not counted.
  """
  c = _ACTIVE.get()
  if c is None:
    return
  _check_name(name, 'histogram', c)
  values = jnp.asarray(values, jnp.float32)
  # The [batch] mask, broadcast where the histogram is computed (a step that writes no summaries
  # then materialises nothing for it).
  c.histograms[name] = (values, _row_mask(values))


def _row_weights(values: jax.Array) -> jax.Array | None:
  """The padding mask broadcast over `values` when its leading axis is the batch, else None."""
  return _broadcast(values, _row_mask(values))


def _row_mask(values: jax.Array) -> jax.Array | None:
  """The `[batch]` padding mask when the leading axis of `values` is the batch, else None."""
  mask = padding.current_mask()
  if mask is None or values.ndim == 0 or values.shape[0] != mask.shape[0]:
    return None
  return mask


def _broadcast(values: jax.Array, mask: jax.Array | None) -> jax.Array | None:
  if mask is None:
    return None
  return jnp.broadcast_to(mask.reshape((-1,) + (1,) * (values.ndim - 1)), values.shape)


def zero_fraction_scalar(name: str, values: Any) -> None:
  """`scalar(name, zero_fraction(values))`, computed only in the steps that write summaries.

  A `scalar` is computed by every step (its value is given), and a canned DNN's per-layer zero
  fractions cost ~10% of its step; these are computed with the histograms, under the train
  step's runtime switch, so the steps that write no summaries skip them.
  """
  c = _ACTIVE.get()
  if c is None:
    return
  _check_name(name, 'scalar', c)
  values = jnp.asarray(values)
  c.zero_fractions[name] = (values, _row_mask(values))


def zero_fraction(values: Any) -> jax.Array:
  """The fraction of exact zeros in `values` (TF's `tf.math.zero_fraction`), a float32 scalar.

  Inside a step, rows that only pad a short final batch are left out (leading axis = batch).
  """
  values = jnp.asarray(values)
  return _zero_fraction(values, _row_weights(values))


def _zero_fraction(values: jax.Array, weights: jax.Array | None) -> jax.Array:
  zeros = (values == 0).astype(jnp.float32)
  if weights is None:
    return jnp.mean(zeros)
  return jnp.sum(zeros * weights) / jnp.maximum(jnp.sum(weights), 1.0)


# -- histograms ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def bucket_limits() -> np.ndarray:
  """TF's default histogram bucket upper edges: +-1e-12 * 1.1^k up to 1e20, 0, and float max.

  Bucket i counts values `v` with `limits[i-1] <= v < limits[i]` (TF's HistogramProto).
  """
  positive = []
  v = 1e-12
  while v < 1e20:
    positive.append(v)
    v *= 1.1
  limits = [-x for x in reversed(positive)] + [0.0] + positive + [float(np.finfo(np.float32).max)]
  out = np.asarray(limits, np.float32)
  out.setflags(write=False)
  return out


class Histogram(Metric):
  """A mergeable histogram over TF's default buckets (`bucket_limits()`).

  Attributes:
    counts: `[len(bucket_limits())]` float32 counts.
    num, total, total_sq: count, sum and sum of squares of the finite values.
    min, max: their extremes (meaningless while `num == 0`).
  """
  counts: jax.Array
  num: jax.Array
  total: jax.Array
  total_sq: jax.Array
  min: jax.Array
  max: jax.Array

  def merge(self, other: 'Histogram') -> 'Histogram':
    """Sums the counts and moments; min/max of the non-empty sides (zeros are the identity)."""
    if not isinstance(other, Histogram):
      raise TypeError(f'cannot merge a Histogram with a {type(other).__name__}')
    lo = jnp.where(self.num > 0, jnp.where(other.num > 0, jnp.minimum(self.min, other.min),
                                           self.min), other.min)
    hi = jnp.where(self.num > 0, jnp.where(other.num > 0, jnp.maximum(self.max, other.max),
                                           self.max), other.max)
    return Histogram(counts=self.counts + other.counts, num=self.num + other.num,
                     total=self.total + other.total, total_sq=self.total_sq + other.total_sq,
                     min=lo, max=hi)

  def result(self) -> jax.Array:
    """The mean of the values (0 when empty); TensorBoard gets the whole state."""
    return jnp.where(self.num > 0, self.total / jnp.maximum(self.num, 1.0), 0.0)

  def reduce_replicas(self, axis_name: str) -> 'Histogram':
    """The merge over a pmap / shard_map axis (psum of sums, pmin / pmax of the extremes)."""
    big = jnp.finfo(jnp.float32).max
    empty = self.num <= 0
    num = jax.lax.psum(self.num, axis_name)
    return Histogram(counts=jax.lax.psum(self.counts, axis_name), num=num,
                     total=jax.lax.psum(self.total, axis_name),
                     total_sq=jax.lax.psum(self.total_sq, axis_name),
                     min=jax.lax.pmin(jnp.where(empty, big, self.min), axis_name),
                     max=jax.lax.pmax(jnp.where(empty, -big, self.max), axis_name))


def histogram_state(values: Any, weights: Any = None) -> Histogram:
  """The `Histogram` of `values` (pure jnp; non-finite values and zero weights are left out).

  `weights` (same shape as `values`, 0 or 1) marks the values to count; None counts all.
  """
  return histogram_states({'': (values, weights)})['']


def histogram_states(pairs: Mapping[str, tuple[Any, Any]]) -> dict[str, Histogram]:
  """`{name: histogram_state(values, weights)}` for `{name: (values, weights)}`, in one bucketing.

  All values are bucketed by one `searchsorted` and one scatter into a `[n, buckets]` table (each
  histogram's rows offset by its index): the same counts as one histogram at a time (sums of
  0/1 weights are exact in any order), for about the compile time of one histogram instead of n
  (a step that writes the canned DNN's layer histograms compiled in twice the time otherwise).
  """
  if not pairs:
    return {}
  limits = jnp.asarray(bucket_limits())
  n_buckets = limits.shape[0]
  big = jnp.finfo(jnp.float32).max
  parts, out = [], {}
  for i, (name, (values, weights)) in enumerate(pairs.items()):
    x = jnp.ravel(jnp.asarray(values, jnp.float32))
    finite = jnp.isfinite(x)
    if weights is not None:
      finite = finite & (jnp.ravel(jnp.asarray(weights)) > 0)
    weight = finite.astype(jnp.float32)
    safe = jnp.where(finite, x, 0.0)
    parts.append((safe, weight, jnp.full(x.shape, i * n_buckets, jnp.int32)))
    num = jnp.sum(weight)
    out[name] = dict(num=num, total=jnp.sum(safe * weight), total_sq=jnp.sum(safe * safe * weight),
                     min=jnp.where(num > 0, jnp.min(jnp.where(finite, x, big)), 0.0),
                     max=jnp.where(num > 0, jnp.max(jnp.where(finite, x, -big)), 0.0))
  safe, weight, offset = (jnp.concatenate(p) for p in zip(*parts))
  idx = jnp.clip(jnp.searchsorted(limits, safe, side='right'), 0, n_buckets - 1) + offset
  counts = jnp.zeros((len(parts) * n_buckets,), jnp.float32).at[idx].add(weight)
  counts = counts.reshape(len(parts), n_buckets)
  return {name: Histogram(counts=counts[i], **fields) for i, (name, fields) in enumerate(out.items())}


# -- eval aggregation ---------------------------------------------------------------------------
def eval_states(outputs: Mapping[str, Mapping[str, Any]], batch_weight=None) -> dict[str, Metric]:
  """One eval batch's summary states: a `Mean` per scalar (count 1 per batch), a `Histogram` each.

  `batch_weight` (default 1) is the count of each scalar's Mean, so merging gives the mean of the
  per-batch values, as the eval `loss` is.
  """
  count = jnp.ones((), jnp.float32) if batch_weight is None else batch_weight
  states: dict[str, Metric] = {
      name: Mean(total=v * count, count=count) for name, v in outputs['scalars'].items()}
  states.update(outputs['histograms'])
  return states


@flax.struct.dataclass
class HostHistogram:
  """A `Histogram` on the host, trimmed to the non-empty bucket range, ready for an event file."""
  min: float
  max: float
  num: float
  sum: float
  sum_squares: float
  bucket_limits: np.ndarray
  bucket_counts: np.ndarray


def to_host_histogram(state: Histogram) -> HostHistogram:
  """Numpy view of a histogram state with leading and trailing empty buckets dropped."""
  counts = np.asarray(state.counts, np.float64)
  limits = bucket_limits().astype(np.float64)
  nonzero = np.flatnonzero(counts)
  if nonzero.size == 0:
    lo, hi = 0, 1
  else:
    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
  return HostHistogram(min=float(state.min), max=float(state.max), num=float(state.num),
                       sum=float(state.total), sum_squares=float(state.total_sq),
                       bucket_limits=limits[lo:hi], bucket_counts=counts[lo:hi])


__all__ = ['scalar', 'histogram', 'zero_fraction', 'zero_fraction_scalar', 'Histogram', 'histogram_state', 'histogram_states',
           'bucket_limits', 'collecting']
