"""Dense views of categorical columns: embedding, shared embeddings and indicator (multi-hot)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

from jestimator.columns import base, categorical, sequence

_COMBINERS = ('sum', 'mean', 'sqrtn')


def _is_sequence(col: base.FeatureColumn) -> bool:
  return isinstance(col, base.SequenceColumn)


class _CategoricalView(base.DenseColumn):
  """Shared behaviour of columns wrapping one categorical column."""

  @property
  def is_sequence(self) -> bool:
    """True when wrapping a sequence categorical column (then for `SequenceFeatures` only)."""
    return _is_sequence(self.categorical_column)


@dataclasses.dataclass(frozen=True)
class EmbeddingColumn(_CategoricalView):
  """`[batch, dimension]` combination (`combiner`) of the embeddings of each example's ids.

  Flax parameter: `<name>/embedding_weights` of shape `[num_buckets, dimension]`, initialised by
  `initializer` (default truncated normal with stddev `1/sqrt(dimension)`, as TF): Flax's
  `(key, shape, dtype)` or TF's `(shape, dtype, partition_info)` convention, told apart by the
  first parameter's name (`shape`: TF's; see `_device.flax_initializer`). Invalid ids are
  ignored; ids with weight <= 0 too for 'mean' and 'sqrtn' (TF 2.15's safe lookup), while 'sum'
  keeps them; an example with no valid id gives zeros.
  `max_norm` clips each looked-up embedding to that l2 norm before combining.
  """
  categorical_column: base.CategoricalColumn
  dimension: int
  combiner: str = 'mean'
  initializer: Callable[..., Any] | None = None
  max_norm: float | None = None
  trainable: bool = True

  _tf_name = 'embedding_column'

  @property
  def name(self) -> str:
    return f'{self.categorical_column.name}_embedding'

  @property
  def output_dim(self) -> int:
    return self.dimension

  @property
  def table_name(self) -> str:
    """The Flax submodule holding `embedding_weights`."""
    return self.name


@dataclasses.dataclass(frozen=True)
class SharedEmbeddingColumn(_CategoricalView):
  """An embedding column whose table is shared with the other columns of its collection.

  Flax parameter: `<shared_embedding_collection_name>/embedding_weights`, created once however
  many columns of the collection a layer holds.
  """
  categorical_column: base.CategoricalColumn
  dimension: int
  combiner: str
  initializer: Callable[..., Any] | None
  shared_embedding_collection_name: str
  max_norm: float | None = None
  trainable: bool = True

  _tf_name = 'shared_embeddings'

  @property
  def name(self) -> str:
    return f'{self.categorical_column.name}_shared_embedding'

  @property
  def output_dim(self) -> int:
    return self.dimension

  @property
  def table_name(self) -> str:
    """The Flax submodule holding the shared `embedding_weights`."""
    return self.shared_embedding_collection_name


@dataclasses.dataclass(frozen=True)
class IndicatorColumn(_CategoricalView):
  """Multi-hot `[batch, num_buckets]`: per bucket, the count of its ids (or their summed weights)."""
  categorical_column: base.CategoricalColumn

  _tf_name = 'indicator_column'

  @property
  def name(self) -> str:
    return f'{self.categorical_column.name}_indicator'

  @property
  def output_dim(self) -> int:
    return self.categorical_column.num_buckets


def _check_embedding_args(categorical_column, dimension, combiner, initializer, max_norm,
                          trainable, what: str) -> tuple[int, float | None]:
  if not isinstance(categorical_column, base.CategoricalColumn):
    raise base.ColumnTypeError(
        f'{what}: categorical_column must be a categorical column (vocabulary, '
        f'identity, hash bucket, crossed, weighted, bucketized), got '
        f'{type(categorical_column).__name__}')
  dimension = base.check_positive_int(dimension, f'{what}: dimension')
  if combiner not in _COMBINERS:
    raise ValueError(f'{what}: combiner must be one of {_COMBINERS}, got {combiner!r}')
  if initializer is not None and not callable(initializer):
    raise base.ColumnTypeError(
        f'{what}: initializer must be callable: Flax-style (key, shape, dtype) or TF-style '
        f'(shape, dtype, partition_info) -> array, got '
        f'{type(initializer).__name__}')
  if max_norm is not None:
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or \
        not math.isfinite(max_norm) or max_norm <= 0:
      raise ValueError(f'{what}: max_norm must be a positive number or None, got {max_norm!r}')
    max_norm = float(max_norm)
  if not isinstance(trainable, bool):
    raise base.ColumnTypeError(f'{what}: trainable must be a bool, got {trainable!r}')
  return dimension, max_norm


def embedding_column(categorical_column: base.CategoricalColumn, dimension: int,
                     combiner: str = 'mean', initializer: Callable[..., Any] | None = None,
                     max_norm: float | None = None, trainable: bool = True) -> EmbeddingColumn:
  """A trainable embedding of a categorical column (as `tf.feature_column.embedding_column`).

  `trainable=False` keeps the table in `params` but stops its gradient.

  Example: `embedding_column(categorical_column_with_hash_bucket('occupation', 1000), 8)`.
  """
  what = f"embedding_column '{getattr(categorical_column, 'name', '?')}_embedding'"
  dimension, max_norm = _check_embedding_args(categorical_column, dimension, combiner, initializer,
                                              max_norm, trainable, what)
  return EmbeddingColumn(categorical_column, dimension, combiner, initializer, max_norm, trainable)


def _unwrapped(col: base.CategoricalColumn) -> base.CategoricalColumn:
  """The column under a weighted or sequence wrapper (TF compares those for shared tables)."""
  if isinstance(col, (categorical.WeightedCategoricalColumn, sequence.SequenceCategoricalColumn)):
    return col.categorical_column
  return col


def shared_embeddings(categorical_columns: Sequence[base.CategoricalColumn], dimension: int,
                      combiner: str = 'mean', initializer: Callable[..., Any] | None = None,
                      shared_embedding_collection_name: str | None = None,
                      max_norm: float | None = None,
                      trainable: bool = True) -> list[SharedEmbeddingColumn]:
  """Embedding columns sharing one table (as `tf.feature_column.shared_embeddings`).

  All categorical columns must have the same `num_buckets`. The collection (and Flax submodule)
  name defaults to the sorted column names joined by `_` plus `_shared_embedding`.

  Example: `query, doc = shared_embeddings([query_terms, doc_terms], dimension=16)`.
  """
  cols = list(categorical_columns) if not isinstance(categorical_columns, base.FeatureColumn) \
      else [categorical_columns]
  if not cols:
    raise ValueError('shared_embeddings: categorical_columns must not be empty')
  for c in cols:
    if not isinstance(c, base.CategoricalColumn):
      raise base.ColumnTypeError(f'shared_embeddings: every item must be a categorical column, got '
                                 f'{type(c).__name__}')
  name = shared_embedding_collection_name or \
      '_'.join(sorted(c.name for c in cols)) + '_shared_embedding'
  what = f"shared_embeddings '{name}'"
  for c in cols:
    dimension, max_norm = _check_embedding_args(c, dimension, combiner, initializer, max_norm,
                                                trainable, what)
  kinds = {type(_unwrapped(c)).__name__ for c in cols}
  if len(kinds) > 1:
    # as TF: one table serves one kind of id (an identity id and a hash bucket are unrelated)
    raise ValueError(f'{what}: all categorical columns must have the same type (weighted or '
                     f'sequence versions of it included), got {sorted(kinds)}')
  sizes = {}
  for c in cols:
    try:
      sizes[c.name] = c.num_buckets
    except ValueError:  # a vocabulary still to be analysed: checked when the layer is built
      pass
  if len(set(sizes.values())) > 1:
    raise ValueError(f'{what}: all categorical columns must have the same number of buckets, got '
                     f'{sizes}')
  if len({c.name for c in cols}) != len(cols):
    raise ValueError(f'{what}: categorical column names must be distinct, got '
                     f'{[c.name for c in cols]}')
  return [SharedEmbeddingColumn(c, dimension, combiner, initializer, name, max_norm, trainable)
          for c in cols]


def indicator_column(categorical_column: base.CategoricalColumn) -> IndicatorColumn:
  """Multi-hot encoding of a categorical column (as `tf.feature_column.indicator_column`).

  Example: `indicator_column(categorical_column_with_vocabulary_list('gender', ['F', 'M']))`.
  """
  if not isinstance(categorical_column, base.CategoricalColumn):
    raise base.ColumnTypeError(
        'indicator_column: categorical_column must be a categorical column, got '
        f'{type(categorical_column).__name__}')
  return IndicatorColumn(categorical_column)
