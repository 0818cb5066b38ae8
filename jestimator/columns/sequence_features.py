"""`SequenceFeatures`: per-timestep dense input from sequence columns."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jestimator.columns import _device, base, embedding, keys, sequence


def _step_output(col, features, tables: _device.Tables, layer: str
                 ) -> tuple[jax.Array, jax.Array]:
  """(`[batch, T, d]` float32, `[batch]` int32 lengths) of one sequence column."""
  if isinstance(col, sequence.SequenceNumericColumn):
    x = _device.feature(features, keys.value_key(col), col, layer).astype(jnp.float32)
    if x.ndim == 2 and col.shape == (1,):
      x = x[..., None]
    if x.ndim < 2 or x.shape[2:] != col.shape:
      raise ValueError(f"{layer}: {col.describe()}: feature '{col.key}' has shape "
                       f'{tuple(x.shape)}, expected [batch, time] + {list(col.shape)}')
    x = x.reshape(x.shape[:2] + (col.output_dim,))
    if col.normalizer_fn is not None:
      x = col.normalizer_fn(x)
    length = _device.feature(features, keys.length_key(col), col, layer)
    return x, length.astype(jnp.int32)
  seq = col.categorical_column
  ids, _ = _device.categorical_ids(seq, features, layer)
  # [batch, T] ids (one per step) or [batch, T, K] (a rank-3 sparse input): each step combines its
  # K ids as a non-sequence column combines an example's
  b, t = ids.shape[:2]
  k = ids.shape[2] if ids.ndim == 3 else 1
  per_step = ids.reshape(b * t, k)
  if isinstance(col, embedding.IndicatorColumn):
    x = _device.multi_hot(per_step, None, seq.num_buckets)
  else:
    table, _ = tables.get(col)
    x = _device.embedding_lookup(table, per_step, None, col.combiner, col.max_norm)
  x = x.reshape(b, t, x.shape[-1])
  length = _device.feature(features, keys.length_key(seq), col, layer)
  return x, length.astype(jnp.int32)


class SequenceFeatures(nn.Module):
  """TF's `SequenceFeatures`: returns `(sequence_input, sequence_length)`.

  `sequence_input` is `[batch, T, D]` float32: the per-step outputs of the columns concatenated in
  name order (`sequence_numeric_column` values; `embedding_column` / `indicator_column` of a
  `sequence_categorical_column_*`: one id per step, or several from a rank-3 sparse input, combined
  by the embedding's combiner; invalid ids give zeros). T is the longest
  padded time axis among the columns (shorter ones are zero-padded). `sequence_length` is `[batch]`
  int32; TF requires all columns to agree on it, and here the element-wise maximum is returned.
  """
  feature_columns: Sequence[base.FeatureColumn]

  @nn.compact
  def __call__(self, features: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
    layer = 'SequenceFeatures'
    cols = _device.sorted_columns(self.feature_columns, layer)
    for c in cols:
      ok = isinstance(c, sequence.SequenceNumericColumn) or (
          isinstance(c, (embedding.EmbeddingColumn, embedding.SharedEmbeddingColumn,
                         embedding.IndicatorColumn)) and c.is_sequence)
      if not ok:
        if isinstance(c, sequence.SequenceCategoricalColumn):
          raise base.ColumnTypeError(f'{layer}: {c.describe()} has no dense value; wrap it: '
                                     f'embedding_column(<{c.name}>, dimension=...) or '
                                     f'indicator_column(<{c.name}>)')
        raise base.ColumnTypeError(
            f'{layer}: {c.describe()} is not a sequence column; SequenceFeatures '
            'takes sequence_numeric_column and embedding/indicator columns of '
            'sequence_categorical_column_*; use DenseFeatures for the others')
    tables = _device.Tables(layer)
    outs, lengths = [], []
    for c in cols:
      x, n = _step_output(c, features, tables, layer)
      outs.append(x)
      lengths.append(n)
    t = max(x.shape[1] for x in outs)
    outs = [jnp.pad(x, ((0, 0), (0, t - x.shape[1]), (0, 0))) for x in outs]
    length = lengths[0]
    for n in lengths[1:]:
      length = jnp.maximum(length, n)
    return jnp.concatenate(outs, axis=-1), length
