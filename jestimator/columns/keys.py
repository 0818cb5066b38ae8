"""Keys of the host stage's output dict, shared by the host stage and the Flax layers.

- numeric / sequence numeric column: `'<key>'` (float32 `[batch, *shape]`, or `[batch, T, *shape]`),
  so a plain numeric feature dict is already valid input for `DenseFeatures`;
- sequence numeric length: `'<key>/length'` (int32 `[batch]`);
- categorical ids (vocabulary, identity, hash bucket, crossed): `'<name>@<digest>/ids'`, int32
  `[batch, width]` with -1 for "no id", `width` a power of two (`[batch, T, K]` for a rank-3
  sparse input of a sequence column: K ids per step);
- weights of a weighted column: `'<name>@<digest>/weights'`, float32 aligned with its ids;
- sequence categorical length: `'<name>@<digest>/length'`, int32 `[batch]`.

`<digest>` is 8 hex digits of the column's JSON spec, so two different columns over the same raw
feature (say a vocabulary and a hash bucket on 'occupation') never collide, and the keys depend only
on the column, not on which other columns share the host stage. Bucketized columns have no key of
their own: the device bucketizes the numeric values.
"""
from __future__ import annotations

from jestimator.columns import base, categorical, crossed, numeric, sequence
from jestimator.columns.serialization import digest

HOST_ID_COLUMNS = (categorical.VocabularyListCategoricalColumn,
                   categorical.VocabularyFileCategoricalColumn,
                   categorical.IdentityCategoricalColumn, categorical.HashedCategoricalColumn,
                   crossed.CrossedColumn)


def value_key(col: numeric.NumericColumn | sequence.SequenceNumericColumn) -> str:
  """Key of a numeric column's float32 values."""
  return col.key


def ids_key(col: base.CategoricalColumn) -> str:
  """Key of the int32 ids of a vocabulary / identity / hash bucket / crossed column."""
  if not isinstance(col, HOST_ID_COLUMNS):
    raise base.ColumnTypeError(f'{col.describe()} has no host ids of its own')
  return f'{col.name}@{digest(col)}/ids'


def weights_key(col: categorical.WeightedCategoricalColumn) -> str:
  """Key of a weighted column's float32 weights."""
  return f'{col.name}@{digest(col)}/weights'


def length_key(col: sequence.SequenceNumericColumn | sequence.SequenceCategoricalColumn) -> str:
  """Key of a sequence column's int32 `[batch]` lengths."""
  if isinstance(col, sequence.SequenceNumericColumn):
    return f'{col.key}/length'
  inner = col.categorical_column
  return f'{inner.name}@{digest(inner)}/length'
