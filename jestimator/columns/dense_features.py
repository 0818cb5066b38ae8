"""`DenseFeatures` (TF's input layer) and `input_layer`."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jestimator.columns import _device, base, embedding, numeric, sequence


def _wrapper_hint(col: base.FeatureColumn) -> str:
  n = col.name
  return (f'{col.describe()} is categorical and has no dense value; wrap it: '
          f'embedding_column(<{n}>, dimension=...) or indicator_column(<{n}>)')


def check_dense(col: base.FeatureColumn, layer: str) -> None:
  """Raises unless `DenseFeatures` can take `col`, naming the wrapper or layer to use instead."""
  if sequence.is_sequence(col):
    raise base.ColumnTypeError(
        f'{layer}: {col.describe()} is a sequence column; use SequenceFeatures')
  if isinstance(col, base.DenseColumn):
    return
  if isinstance(col, base.CategoricalColumn):
    raise base.ColumnTypeError(f'{layer}: {_wrapper_hint(col)}')
  raise base.ColumnTypeError(f'{layer}: unsupported column {col!r:.100}')


def dense_output(col: base.DenseColumn, features: Mapping[str, Any], tables: _device.Tables,
                 layer: str) -> jax.Array:
  """`[batch, col.output_dim]` float32 block of one dense column."""
  if isinstance(col, numeric.NumericColumn):
    x = _device.numeric_values(col, features, layer)
    return x.reshape(x.shape[0], col.output_dim)
  if isinstance(col, numeric.BucketizedColumn):
    b = _device.bucket_ids(col, features, layer)
    one_hot = jax.nn.one_hot(b, col.buckets_per_element, dtype=jnp.float32)
    return one_hot.reshape(b.shape[0], col.output_dim)
  if isinstance(col, embedding.IndicatorColumn):
    ids, w = _device.categorical_ids(col.categorical_column, features, layer)
    return _device.multi_hot(ids, w, col.categorical_column.num_buckets)
  if isinstance(col, (embedding.EmbeddingColumn, embedding.SharedEmbeddingColumn)):
    table, _ = tables.get(col)
    ids, w = _device.categorical_ids(col.categorical_column, features, layer)
    return _device.embedding_lookup(table, ids, w, col.combiner, col.max_norm)
  raise base.ColumnTypeError(f'{layer}: unsupported dense column {col!r:.100}')


class DenseFeatures(nn.Module):
  """TF's `DenseFeatures`: dense column outputs concatenated on the last axis in column *name*
  order (whatever order they were given in).

  Input: the host stage's dict (`transform_features(raw, cols)`; numeric-only columns also accept
  plain float arrays keyed by feature name). Output: `[batch, sum(output_dim)]` float32.
  Takes numeric, bucketized, embedding, shared embedding and indicator columns; a bare categorical
  column is rejected with the wrapper to use. Parameters: `<col name>/embedding_weights` per
  embedding column, `<collection>/embedding_weights` per shared table.

  Example:
    cols = [numeric_column('age'), embedding_column(hash_bucket('occupation', 100), 4)]
    x = transform_features({'age': [30.0], 'occupation': ['Sales']}, cols)
    params = DenseFeatures(cols).init(jax.random.key(0), x)
    dense = DenseFeatures(cols).apply(params, x)          # [1, 5]
  """
  feature_columns: Sequence[base.FeatureColumn]

  @nn.compact
  def __call__(self, features: Mapping[str, Any],
               cols_to_output_tensors: dict | None = None) -> jax.Array:
    layer = 'DenseFeatures'
    cols = _device.sorted_columns(self.feature_columns, layer)
    for c in cols:
      check_dense(c, layer)
    tables = _device.Tables(layer)
    outs = []
    for c in cols:
      out = dense_output(c, features, tables, layer)
      if cols_to_output_tensors is not None:
        cols_to_output_tensors[c] = out
      outs.append(out)
    return jnp.concatenate(outs, axis=-1)


def _in_module_context() -> bool:
  try:
    from flax.linen.module import _context  # private; only used to pick a friendly error
    return _context.module_stack[-1] is not None
  except (ImportError, AttributeError, IndexError):  # pragma: no cover
    return True


def input_layer(features: Mapping[str, Any], feature_columns: Sequence[base.FeatureColumn],
                cols_to_output_tensors: dict | None = None) -> jax.Array:
  """`DenseFeatures(feature_columns)(features)` as a function, for use inside a `model_fn`.

  Inside a Flax compact context (an Estimator `model_fn`) the layer attaches to the caller, so its
  embedding tables become the model's parameters. Outside any module it works for parameter-free
  columns (numeric, bucketized, indicator); embedding columns then need `DenseFeatures(...).init`.
  `cols_to_output_tensors`, if given, receives each column's `[batch, output_dim]` block.
  """
  if _in_module_context():
    return DenseFeatures(tuple(feature_columns))(features, cols_to_output_tensors)
  cols = base.as_column_list(feature_columns, 'input_layer')
  for c in cols:
    if isinstance(c, (embedding.EmbeddingColumn, embedding.SharedEmbeddingColumn)):
      raise ValueError(f'input_layer: {c.describe()} has parameters, so outside a Flax module use '
                       'DenseFeatures(columns).init(key, features) / .apply(params, features)')
  return DenseFeatures(cols).apply({}, features, cols_to_output_tensors)
