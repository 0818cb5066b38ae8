"""Cross-checks an export's feature columns (`columns.json`) against its weights at load.

`columns.json` says how raw features become ids and widths; the weights (and the compiled program)
were made for particular sizes. An edited or damaged `columns.json` whose sizes no longer match
(a `hash_bucket_size` changed, a vocabulary cut or emptied) would load and predict wrong numbers
silently (ids beyond a table are dropped on the device), so loading refuses it, naming the column:

- every categorical column needs at least one bucket (a non-empty vocabulary, sizes >= 1);
- a table named after a column (`<column>/weights` of a linear model, `<column>_embedding/
  embedding_weights` of an embedding, `<collection>/embedding_weights` of a shared one) must have
  the column's rows (`num_buckets`, or `output_dim` for a dense column in a linear model) and, for
  an embedding, its `dimension`;
- the sizes recorded at export time (`signature.json` `host_stage.column_sizes`, absent in older
  exports) must be the ones `columns.json` gives now: this covers columns without a table of their
  own (an `indicator_column` feeding a dense layer).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from jestimator.columns import base, embedding


def column_sizes(columns: Iterable[base.FeatureColumn]) -> dict[str, int]:
  """`{column name: num_buckets}` of every categorical column (nested ones included)."""
  return {c.name: int(c.num_buckets) for c in base.walk(columns)
          if isinstance(c, base.CategoricalColumn)}


def _tables(columns: Iterable[base.FeatureColumn]) -> dict[str, tuple[base.FeatureColumn, str,
                                                                          tuple]]:
  """`{'<scope>/<leaf>': (column, what, expected shape prefix)}` of the tables columns own."""
  out: dict[str, tuple[base.FeatureColumn, str, tuple]] = {}
  for c in base.walk(columns):
    if isinstance(c, (embedding.EmbeddingColumn, embedding.SharedEmbeddingColumn)):
      cat = c.categorical_column
      out[f'{c.table_name}/embedding_weights'] = (
          c, f'num_buckets={cat.num_buckets} and dimension={c.dimension}',
          (cat.num_buckets, c.dimension))
    if isinstance(c, base.CategoricalColumn):
      out[f'{c.name}/weights'] = (c, f'num_buckets={c.num_buckets}', (c.num_buckets,))
    elif isinstance(c, base.DenseColumn):
      out[f'{c.name}/weights'] = (c, f'output_dim={c.output_dim}', (c.output_dim,))
  return out


def check(columns: Iterable[base.FeatureColumn], weights: Mapping[str, Any],
          recorded: Mapping[str, int] | None, where: str) -> None:
  """Raises ValueError naming the first column whose sizes disagree (see the module docstring).

  Args:
    columns: the columns read from `columns.json`.
    weights: `{variable name: array}` of the export (only shapes are read).
    recorded: `column_sizes` written at export time, or None for an older export.
    where: the export path, for messages.
  """
  columns = list(columns)
  damaged = (f'{where}: columns.json does not match the exported weights (edited or damaged); '
             're-export the model')
  for c in base.walk(columns):
    if isinstance(c, base.CategoricalColumn):
      try:
        n = int(c.num_buckets)
      except (TypeError, ValueError) as e:
        raise ValueError(f"{damaged}: feature column '{c.name}': {e}") from None
      if n < 1:
        empty = getattr(c, 'vocabulary_list', None) == () or \
            getattr(c, 'vocabulary_size', None) == 0
        raise ValueError(f"{damaged}: feature column '{c.name}' has "
                         f"{'an empty vocabulary' if empty else f'{n} buckets'}; it needs at "
                         'least one')
  now = column_sizes(columns)
  for name, size in sorted((recorded or {}).items()):
    if name in now and now[name] != size:
      raise ValueError(f"{damaged}: feature column '{name}' has num_buckets={now[name]} but was "
                       f'exported with {size}')
  tables = _tables(columns)
  for var, value in sorted(weights.items()):
    parts = var.split('/')
    found = tables.get('/'.join(parts[-2:]))
    if found is None:
      continue
    col, what, expected = found
    shape = tuple(getattr(value, 'shape', ()))
    if shape[:len(expected)] != expected:
      raise ValueError(f"{damaged}: feature column '{col.name}' has {what} in columns.json but "
                       f'its table {var!r} in the weights has shape {list(shape)}')
