"""`LinearModel`: TF's linear model over dense and categorical columns."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jestimator.columns import _device, base, embedding, sequence
from jestimator.columns.dense_features import dense_output

_COMBINERS = ('sum', 'mean', 'sqrtn')


class LinearModel(nn.Module):
  """`[batch, units]` logits: a weighted sum over the columns plus `bias_weights`.

  Categorical columns (vocabulary, identity, hash bucket, crossed, weighted, bucketized) are sparse
  lookups of per-bucket weight rows `<col name>/weights` `[num_buckets, units]`, combined over each
  example's valid ids with `sparse_combiner` ('sum'; 'mean' divides by the summed weights, 'sqrtn'
  by their l2 norm). As TF's, 'sum' keeps entries whose weight is <= 0 (a negative weight
  subtracts); 'mean' and 'sqrtn' drop them (TF's safe embedding lookup). No dense one-hot is ever
  built, so 1e6 hash buckets cost one gather. Dense columns (numeric, embedding, indicator) go
  through a matmul with `<col name>/weights` `[output_dim, units]`. Weights start at zero, as TF's; columns are processed in name order.

  Example:
    cols = [bucketized_column(numeric_column('age'), [30, 50]),
            crossed_column(['education', 'occupation'], 10_000)]
    x = transform_features(raw, cols)
    params = LinearModel(cols).init(jax.random.key(0), x)
    logits = LinearModel(cols).apply(params, x)            # [batch, 1]
  """
  feature_columns: Sequence[base.FeatureColumn]
  units: int = 1
  sparse_combiner: str = 'sum'

  @nn.compact
  def __call__(self, features: Mapping[str, Any]) -> jax.Array:
    layer = 'LinearModel'
    if self.sparse_combiner not in _COMBINERS:
      raise ValueError(f'{layer}: sparse_combiner must be one of {_COMBINERS}, got '
                       f'{self.sparse_combiner!r}')
    if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
      raise ValueError(f'{layer}: units must be a positive int, got {self.units!r}')
    cols = _device.sorted_columns(self.feature_columns, layer)
    for c in cols:
      if sequence.is_sequence(c):
        raise base.ColumnTypeError(
            f'{layer}: {c.describe()} is a sequence column; LinearModel takes '
            'non-sequence columns')
      if not isinstance(c, (base.CategoricalColumn, base.DenseColumn)):
        raise base.ColumnTypeError(f'{layer}: unsupported column {c!r:.100}')
    zeros = nn.initializers.zeros_init()
    tables = _device.Tables(layer)
    total = None
    for c in cols:
      if isinstance(c, base.CategoricalColumn):  # includes bucketized: sparse, as in TF
        weights = _device.ParamGroup((('weights', (c.num_buckets, self.units), zeros),),
                                     name=c.name)()['weights']
        ids, w = _device.categorical_ids(c, features, layer)
        safe, w = _device.valid_weights(ids, w, c.num_buckets,
                                        prune=_device.prunes_weights(self.sparse_combiner))
        out = _device.combine(jnp.take(weights, safe, axis=0), w, self.sparse_combiner)
      else:
        spec = (('weights', (c.output_dim, self.units), zeros),)
        if isinstance(c, (embedding.EmbeddingColumn, embedding.SharedEmbeddingColumn)):
          # the table and the column's weights share the column's scope, as in TF
          table, extra = tables.get(c, spec)
          ids, w = _device.categorical_ids(c.categorical_column, features, layer)
          x = _device.embedding_lookup(table, ids, w, c.combiner, c.max_norm)
          weights = extra['weights']
        else:
          x = dense_output(c, features, tables, layer)
          weights = _device.ParamGroup(spec, name=c.name)()['weights']
        out = x @ weights
      total = out if total is None else total + out
    bias = self.param('bias_weights', zeros, (self.units,), jnp.float32)
    return total + bias
