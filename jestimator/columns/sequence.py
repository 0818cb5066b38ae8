"""Sequence columns (`tf.feature_column.sequence_*`), consumed by `SequenceFeatures`.

Each example is a list of timesteps (ragged across the batch). The host stage pads them to
`[batch, T]` (T rounded up to a power of two) and records each example's length.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from jestimator.columns import base, categorical


@dataclasses.dataclass(frozen=True)
class SequenceNumericColumn(base.SequenceColumn):
  """Per-timestep real values of shape `shape`; padded steps hold `default_value` (0.0)."""
  key: str
  shape: tuple[int, ...] = (1,)
  default_value: float = 0.0
  dtype: str = 'float32'
  normalizer_fn: Callable[[Any], Any] | None = None

  _tf_name = 'sequence_numeric_column'

  @property
  def name(self) -> str:
    return self.key

  @property
  def output_dim(self) -> int:
    """Per-timestep width in `SequenceFeatures`."""
    return math.prod(self.shape)


def sequence_numeric_column(key: str, shape: int | Sequence[int] = (1,), default_value: float = 0.0,
                            dtype: Any = 'float32',
                            normalizer_fn: Callable[[Any], Any] | None = None
                            ) -> SequenceNumericColumn:
  """A sequence of real values per example (as `tf.feature_column.sequence_numeric_column`).

  Example: `sequence_numeric_column('temperatures')` with rows like `[[20.5, 21.0], [19.0]]`.
  """
  base.check_key(key, 'sequence_numeric_column')
  what = f"sequence_numeric_column '{key}'"
  shape = base.check_shape(shape, what)
  d = base.canonical_dtype(dtype, f'{what}: dtype')
  if d == 'string' or np.dtype(d).kind not in 'iuf':
    raise base.ColumnTypeError(f'{what}: dtype must be a float or int dtype, got {dtype!r}')
  if isinstance(default_value, bool) or not isinstance(default_value, (int, float, np.number)):
    raise base.ColumnTypeError(f'{what}: default_value must be a number, got {default_value!r}')
  if normalizer_fn is not None and not callable(normalizer_fn):
    raise base.ColumnTypeError(f'{what}: normalizer_fn must be callable')
  return SequenceNumericColumn(key, shape, float(default_value), d, normalizer_fn)


@dataclasses.dataclass(frozen=True)
class SequenceCategoricalColumn(base.CategoricalColumn, base.SequenceColumn):
  """One id per timestep from a categorical column; wrap it in `embedding_column` or
  `indicator_column` for `SequenceFeatures`."""
  categorical_column: base.CategoricalColumn

  _tf_name = 'sequence_categorical_column'

  @property
  def name(self) -> str:
    return self.categorical_column.name

  @property
  def num_buckets(self) -> int:
    return self.categorical_column.num_buckets


def sequence_categorical_column_with_identity(key: str, num_buckets: int,
                                              default_value: int | None = None
                                              ) -> SequenceCategoricalColumn:
  """Sequence of integer ids (as TF). Example: rows like `[[3, 1, 4], [1]]`."""
  return SequenceCategoricalColumn(
      categorical.categorical_column_with_identity(key, num_buckets, default_value))


def sequence_categorical_column_with_hash_bucket(key: str, hash_bucket_size: int, dtype: Any = str
                                                 ) -> SequenceCategoricalColumn:
  """Sequence of hashed values (as TF). Example: token lists hashed into 10_000 buckets."""
  return SequenceCategoricalColumn(
      categorical.categorical_column_with_hash_bucket(key, hash_bucket_size, dtype))


def sequence_categorical_column_with_vocabulary_list(
    key: str, vocabulary_list: Sequence[Any] | None, dtype: Any = None, default_value: int = -1,
    num_oov_buckets: int = 0) -> SequenceCategoricalColumn:
  """Sequence of vocabulary ids from a list (as TF)."""
  return SequenceCategoricalColumn(categorical.categorical_column_with_vocabulary_list(
      key, vocabulary_list, dtype, default_value, num_oov_buckets))


def sequence_categorical_column_with_vocabulary_file(
    key: str, vocabulary_file: str, vocabulary_size: int | None = None, dtype: Any = str,
    default_value: int | None = None, num_oov_buckets: int = 0) -> SequenceCategoricalColumn:
  """Sequence of vocabulary ids from a file (as TF)."""
  return SequenceCategoricalColumn(categorical.categorical_column_with_vocabulary_file(
      key, vocabulary_file, vocabulary_size, dtype, default_value, num_oov_buckets))


def is_sequence(col: base.FeatureColumn) -> bool:
  """True for sequence columns and embedding/indicator views of them."""
  if isinstance(col, base.SequenceColumn):
    return True
  inner = getattr(col, 'categorical_column', None)
  return isinstance(inner, base.SequenceColumn)

