"""Device-stage building blocks shared by `DenseFeatures`, `LinearModel` and `SequenceFeatures`.

Pure jnp functions over the host stage's output (see `jestimator.columns.keys`): bucketization,
id/weight extraction, combiners over the valid ids of each row, embedding lookups and multi-hot.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jestimator.columns import base, categorical, embedding, keys, numeric, sequence

_ONE_HOT_LIMIT = 1 << 16  # above width * buckets elements, multi-hot uses a scatter-add


def feature(features: Mapping[str, Any], key: str, col: base.FeatureColumn, layer: str):
  """`features[key]` as a jnp array, or an error saying how to produce it."""
  if key not in features:
    raise ValueError(
        f"{layer}: {col.describe()} needs feature '{key}', which is not in the features (keys: "
        f'{sorted(map(str, features))}). Transform raw features first with '
        'jestimator.columns.transform_features(raw, columns) (an Estimator given feature_columns '
        'does this).')
  return jnp.asarray(features[key])


def numeric_values(col: numeric.NumericColumn, features, layer: str) -> jax.Array:
  """`[batch, *shape]` float32 values after the column's normalizer."""
  return col.dense_values(feature(features, keys.value_key(col), col, layer), layer)


def bucket_ids(col: numeric.BucketizedColumn, features, layer: str) -> jax.Array:
  """`[batch, prod(shape)]` int32 bucket of each element (side='right': b[i-1] <= x < b[i])."""
  x = numeric_values(col.source_column, features, layer)
  x = x.reshape(x.shape[0], col.source_column.output_dim)
  return jnp.searchsorted(jnp.asarray(col.boundaries_f32()), x, side='right').astype(jnp.int32)


def _as_2d(x: jax.Array) -> jax.Array:
  return x[:, None] if x.ndim == 1 else x


def categorical_ids(col: base.CategoricalColumn, features, layer: str
                    ) -> tuple[jax.Array, jax.Array | None]:
  """(`[batch, width]` int32 ids, -1 = none; matching float32 weights or None)."""
  if isinstance(col, numeric.BucketizedColumn):
    b = bucket_ids(col, features, layer)
    return b + jnp.arange(b.shape[1], dtype=jnp.int32) * col.buckets_per_element, None
  if isinstance(col, keys.HOST_ID_COLUMNS):
    return _as_2d(feature(features, keys.ids_key(col), col, layer).astype(jnp.int32)), None
  if isinstance(col, categorical.WeightedCategoricalColumn):
    ids, _ = categorical_ids(col.categorical_column, features, layer)
    w = _as_2d(feature(features, keys.weights_key(col), col, layer).astype(jnp.float32))
    width = ids.shape[1]
    if w.shape[1] > width:
      w = w[:, :width]
    elif w.shape[1] < width:
      w = jnp.pad(w, ((0, 0), (0, width - w.shape[1])))
    return ids, w
  if isinstance(col, sequence.SequenceCategoricalColumn):
    return categorical_ids(col.categorical_column, features, layer)
  raise base.ColumnTypeError(f'{layer}: unsupported categorical column {col!r:.100}')


def valid_weights(ids: jax.Array, weights: jax.Array | None, n: int, prune: bool
                  ) -> tuple[jax.Array, jax.Array]:
  """(ids with invalid entries set to 0, float32 weights that are 0 for invalid entries).

  Invalid: id < 0 or >= n, and with `prune` also weight <= 0: TF 2.15's safe embedding lookup
  prunes those for the 'mean' and 'sqrtn' combiners only (`prunes_weights`); 'sum' and multi-hot
  keep them, so a negative weight subtracts.
  """
  valid = (ids >= 0) & (ids < n)
  if weights is None:
    w = valid.astype(jnp.float32)
  else:
    if prune:
      valid = valid & (weights > 0)
    w = jnp.where(valid, weights, 0.0)
  return jnp.where(valid, ids, 0), w


def prunes_weights(combiner: str) -> bool:
  """Whether TF's safe embedding lookup drops entries with weight <= 0 for `combiner`."""
  return combiner != 'sum'


def combine(rows: jax.Array, w: jax.Array, combiner: str) -> jax.Array:
  """Combines `[batch, width, d]` rows with `[batch, width]` weights: sum, mean or sqrtn.

  mean divides by the sum of weights, sqrtn by the root of the sum of squared weights; a row with
  no valid entry gives zeros.
  """
  if combiner not in ('sum', 'mean', 'sqrtn'):
    raise ValueError(f"combiner must be 'sum', 'mean' or 'sqrtn', got {combiner!r}")
  if isinstance(rows.shape[1], int) and rows.shape[1] == 1:
    # One id per row (the common single-valued column): elementwise ops XLA fuses, instead of a
    # batched [1]x[1, d] contraction per row, which is slow on CPU.
    r, w1 = rows[:, 0, :], w[:, :1]
    if combiner == 'sum':
      return r * w1
    if combiner == 'mean':
      return jnp.where(w1 > 0, r, r * w1)  # as s / den below, where den <= 0 counts as 1
    return r * jnp.sign(w1)
  s = jnp.einsum('bw,bwd->bd', w, rows)
  if combiner == 'sum':
    return s
  if combiner == 'mean':
    den = jnp.sum(w, axis=1)
  elif combiner == 'sqrtn':
    den = jnp.sqrt(jnp.sum(w * w, axis=1))
  else:
    raise ValueError(f"combiner must be 'sum', 'mean' or 'sqrtn', got {combiner!r}")
  return s / jnp.where(den > 0, den, 1.0)[:, None]


def clip_rows(rows: jax.Array, max_norm: float | None) -> jax.Array:
  """Scales each embedding (last axis) down to l2 norm `max_norm`; NaN-free gradients at 0."""
  if max_norm is None:
    return rows
  norm = jnp.sqrt(jnp.maximum(jnp.sum(rows * rows, axis=-1, keepdims=True), 1e-24))
  # TF's clip_by_norm, `rows * max_norm / maximum(norm, max_norm)`, sends the whole gradient
  # through the norm at a tie (norm == max_norm); jnp.minimum would send half of it.
  return rows * jnp.where(norm >= max_norm, max_norm / norm, 1.0)


def embedding_lookup(table: jax.Array, ids: jax.Array, weights: jax.Array | None,
                     combiner: str, max_norm: float | None) -> jax.Array:
  """`[batch, d]`: the combined embeddings of each row's valid ids (zeros for an empty row).

  As TF's `safe_embedding_lookup_sparse`: entries with weight <= 0 count only for 'sum'.
  """
  safe, w = valid_weights(ids, weights, table.shape[0], prune=prunes_weights(combiner))
  return combine(clip_rows(jnp.take(table, safe, axis=0), max_norm), w, combiner)


def multi_hot(ids: jax.Array, weights: jax.Array | None, n: int) -> jax.Array:
  """`[batch, n]`: per bucket the count of its ids, or the sum of their weights."""
  safe, w = valid_weights(ids, weights, n, prune=False)
  # A symbolic width (an export serving any list length) takes the scatter path.
  if isinstance(ids.shape[1], int) and ids.shape[1] * n <= _ONE_HOT_LIMIT:
    return jnp.einsum('bw,bwn->bn', w, jax.nn.one_hot(safe, n, dtype=jnp.float32))
  rows = jnp.broadcast_to(jnp.arange(ids.shape[0])[:, None], ids.shape)
  return jnp.zeros((ids.shape[0], n), jnp.float32).at[rows, safe].add(w)


class ParamGroup(nn.Module):
  """Creates float32 parameters `specs = ((name, shape, initializer), ...)` under one scope.

  The scope is named after a column (or a shared-embedding collection), so parameter paths read
  like TF's variable names: `x_embedding/embedding_weights`, `age/weights`.
  """
  specs: tuple

  @nn.compact
  def __call__(self) -> dict[str, jax.Array]:
    return {n: self.param(n, init, shape, jnp.float32) for n, shape, init in self.specs}


def default_embedding_init(dimension: int):
  """TF's default: truncated normal (at 2 stddev) with stddev 1/sqrt(dimension)."""
  return nn.initializers.truncated_normal(stddev=1.0 / math.sqrt(dimension))


def is_tf_initializer(fn) -> bool:
  """Whether `fn` takes TF's `(shape, dtype, partition_info)` rather than Flax's `(key, shape,
  dtype)`: its first parameter is named `shape` (TF's initializer classes and the initializer
  functions of TF's tests)."""
  try:
    params = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):  # no signature (a builtin): Flax's convention
    return False
  return bool(params) and params[0].name == 'shape'


def flax_initializer(fn):
  """`fn` as a Flax initializer; a TF-style one is called `fn(shape, dtype[, partition_info])`
  with `dtype` numpy's float32, and its result (a numpy array or an eager TF tensor) converted."""
  if fn is None or not is_tf_initializer(fn):
    return fn
  takes_partition = 'partition_info' in inspect.signature(fn).parameters

  def init(key, shape, dtype=jnp.float32):
    del key  # TF initializers draw from their own seed
    kwargs = {'partition_info': None} if takes_partition else {}
    return jnp.asarray(np.asarray(fn(tuple(shape), np.float32, **kwargs)), dtype).reshape(shape)
  return init


def table_spec(col) -> tuple:
  """The `(name, shape, init)` of an embedding column's table."""
  init = flax_initializer(col.initializer) or default_embedding_init(col.dimension)
  return ('embedding_weights', (col.categorical_column.num_buckets, col.dimension), init)


class Tables:
  """Creates embedding tables inside a compact `__call__`; a shared table only once."""

  def __init__(self, layer: str):
    self.layer = layer
    self.made: dict[str, tuple[tuple[int, int], jax.Array]] = {}

  def get(self, col, extra_specs: tuple = ()) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(the embedding table of `col`, the `extra_specs` params made in the column's scope).

    An embedding column's table lives in the scope named after the column (with the extras, as
    TF's `linear_model/<col>/{embedding_weights,weights}`); a shared one in its collection's scope.
    """
    spec = table_spec(col)
    if isinstance(col, embedding.SharedEmbeddingColumn):
      name = col.table_name
      if name in self.made:
        shape, table = self.made[name]
        if shape != spec[1]:
          raise ValueError(f'{self.layer}: shared embedding collection {name!r} is used with '
                           f'table shapes {shape} and {spec[1]}; columns sharing a table need '
                           'the same num_buckets and dimension')
      else:
        table = ParamGroup((spec,), name=name)()['embedding_weights']
        self.made[name] = (spec[1], table)
      extra = ParamGroup(extra_specs, name=col.name)() if extra_specs else {}
    else:
      params = ParamGroup((spec,) + tuple(extra_specs), name=col.name)()
      table, extra = params['embedding_weights'], params
    if not col.trainable:
      table = jax.lax.stop_gradient(table)
    return table, extra


def sorted_columns(feature_columns, layer: str) -> list[base.FeatureColumn]:
  """Validated columns in name order (TF concatenates and sums in that order)."""
  cols = base.as_column_list(feature_columns, layer)
  if not cols:
    raise ValueError(f'{layer}: feature_columns must not be empty')
  return base.sorted_unique_by_name(cols, layer)

