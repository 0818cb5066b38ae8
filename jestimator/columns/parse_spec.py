"""`make_parse_example_spec`: the tf.Example parse spec feature columns read (TF's rules).

Numeric columns read a `FixedLenFeature(shape, dtype, default_value)`; categorical columns (hash
bucket, vocabulary, identity) a `VarLenFeature` of their dtype; a weighted column adds a float
`VarLenFeature` for its weights; a crossed column reads its raw keys as string `VarLenFeature`s and
its column inputs as they do; bucketized, embedding, indicator and sequence columns read what their
source reads (a sequence numeric column a float `VarLenFeature`).
"""
from __future__ import annotations

from jestimator.columns import base, categorical, crossed, embedding, numeric, sequence
from jestimator.io.parsing import FixedLenFeature, VarLenFeature, merge_parse_specs


def column_parse_spec(col: base.FeatureColumn) -> dict:
  """`{key: FixedLenFeature | VarLenFeature}` of one column (its `parse_example_spec`)."""
  what = f'{col.describe()}: parse_example_spec'
  if isinstance(col, numeric.NumericColumn):
    if col.dtype not in ('float32', 'int64'):
      raise base.ColumnTypeError(
          f"{what}: tf.Example holds float32 and int64 numbers only, the column's "
          f'dtype is {col.dtype}')
    return {col.key: FixedLenFeature(col.shape, col.dtype, col.default_value)}
  if isinstance(col, sequence.SequenceNumericColumn):
    return {col.key: VarLenFeature('int64' if col.dtype == 'int64' else 'float32')}
  if isinstance(col, categorical.IdentityCategoricalColumn):
    return {col.key: VarLenFeature('int64')}
  if isinstance(col, (categorical.HashedCategoricalColumn,
                      categorical.VocabularyFileCategoricalColumn)):
    return {col.key: VarLenFeature(col.dtype)}
  if isinstance(col, categorical.VocabularyListCategoricalColumn):
    if col.dtype is None:
      raise ValueError(f'{what}: the dtype is unknown until analyze() fills the vocabulary; give '
                       'dtype= or run jestimator.columns.analyze first')
    return {col.key: VarLenFeature(col.dtype)}
  if isinstance(col, categorical.WeightedCategoricalColumn):
    return merge_parse_specs([column_parse_spec(col.categorical_column),
                              {col.weight_feature_key: VarLenFeature('float32')}], what)
  if isinstance(col, crossed.CrossedColumn):
    return merge_parse_specs([{k: VarLenFeature('string')} if isinstance(k, str)
                              else column_parse_spec(k) for k in col.keys], what)
  if isinstance(col, numeric.BucketizedColumn):
    return column_parse_spec(col.source_column)
  if isinstance(col, (embedding.EmbeddingColumn, embedding.SharedEmbeddingColumn,
                      embedding.IndicatorColumn, sequence.SequenceCategoricalColumn)):
    return column_parse_spec(col.categorical_column)
  raise base.ColumnTypeError(f'make_parse_example_spec: unsupported column {col!r:.100}')


def make_parse_example_spec(feature_columns) -> dict:
  """The parse spec for `jestimator.io.parse_example` / `tfrecord_input_fn` that the columns need
  (as `tf.feature_column.make_parse_example_spec`), sorted by key.

  Example::

    spec = make_parse_example_spec([numeric_column('age'),
                                    categorical_column_with_hash_bucket('occupation', 100)])
    # {'age': FixedLenFeature((1,), 'float32'), 'occupation': VarLenFeature('string')}
  """
  cols = base.as_column_list(feature_columns, 'make_parse_example_spec')
  return merge_parse_specs([column_parse_spec(c) for c in cols])
