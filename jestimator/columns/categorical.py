"""Categorical columns: vocabulary list / file, identity, hash bucket and weighted."""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import numpy as np

from jestimator.columns import base, hashing as hashing_lib


def _check_oov(default_value: int | None, num_oov_buckets: int, size: int | None, what: str):
  if isinstance(num_oov_buckets, bool) or not isinstance(num_oov_buckets, (int, np.integer)) \
      or num_oov_buckets < 0:
    raise ValueError(f'{what}: num_oov_buckets must be an integer >= 0, got {num_oov_buckets!r}')
  if default_value is None:
    return
  if isinstance(default_value, bool) or not isinstance(default_value, (int, np.integer)):
    raise base.ColumnTypeError(f'{what}: default_value must be an int, got {default_value!r}')
  if num_oov_buckets and default_value != -1:
    raise ValueError(f'{what}: default_value ({default_value}) and num_oov_buckets '
                     f'({num_oov_buckets}) are mutually exclusive')
  if size is not None and default_value >= size:
    # TF accepts it, then its embedding lookup fails on the id and its indicator drops it:
    # refused here, before any data is read
    raise ValueError(f'{what}: default_value must be negative (drop out-of-vocabulary values) or '
                     f'an id in [0, {size}), got {default_value}')


@dataclasses.dataclass(frozen=True)
class VocabularyListCategoricalColumn(base.CategoricalColumn):
  """Ids from an in-memory vocabulary: the i-th entry is id i.

  Out-of-vocabulary values get `default_value` (a negative one drops them, as TF's consumers drop
  negative ids) or, with `num_oov_buckets > 0`, an
  id in `[len(vocabulary), len(vocabulary) + num_oov_buckets)` chosen by the string hash
  (`hashing`: 'tf' is TF's bucket, 'legacy' jestimator's older hash; see `columns.hashing`).
  `vocabulary_list=None` means `analyze()` will fill it from data.
  """
  key: str
  vocabulary_list: tuple | None
  dtype: str | None = None
  default_value: int = -1
  num_oov_buckets: int = 0
  hashing: str = 'tf'

  _tf_name = 'categorical_column_with_vocabulary_list'

  @property
  def name(self) -> str:
    return self.key

  @property
  def is_analyzed(self) -> bool:
    """False while the vocabulary still waits for `analyze`."""
    return self.vocabulary_list is not None

  @property
  def vocabulary_size(self) -> int:
    """`len(vocabulary_list)`."""
    if self.vocabulary_list is None:
      raise ValueError(f"categorical_column_with_vocabulary_list '{self.key}' has "
                       'vocabulary_list=None: run jestimator.columns.analyze(columns, data) first')
    return len(self.vocabulary_list)

  @property
  def num_buckets(self) -> int:
    return self.vocabulary_size + self.num_oov_buckets

  def vocabulary(self) -> tuple:
    """The vocabulary entries (ids in order)."""
    self.vocabulary_size  # raises when not analysed
    return self.vocabulary_list


def _normalise_vocab(vocabulary_list: Sequence[Any], dtype: Any, what: str) -> tuple[tuple, str]:
  if isinstance(vocabulary_list, (str, bytes)):
    raise base.ColumnTypeError(
        f'{what}: vocabulary_list must be a list of values, not a single string')
  vocab = list(vocabulary_list)
  if not vocab:
    raise ValueError(f'{what}: vocabulary_list must not be empty')
  kinds = {'string' if isinstance(v, (str, bytes)) else
           'int64' if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else 'other'
           for v in vocab}
  if 'other' in kinds or len(kinds) > 1:
    raise base.ColumnTypeError(f'{what}: vocabulary_list must hold only strings or only ints, got '
                               f'{sorted({type(v).__name__ for v in vocab})}')
  inferred = kinds.pop()
  d = inferred if dtype is None else base.categorical_dtype(dtype, f'{what}: dtype')
  if d != inferred:
    raise base.ColumnTypeError(
        f'{what}: dtype {d!r} does not match the vocabulary values ({inferred})')
  if d == 'string':
    vocab = tuple(v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in vocab)
    if '' in vocab:
      raise ValueError(f"{what}: vocabulary_list contains '', which marks a missing value and can "
                       'never be looked up')
  else:
    vocab = tuple(int(v) for v in vocab)
  if len(set(vocab)) != len(vocab):
    seen, dups = set(), []
    for v in vocab:
      if v in seen:
        dups.append(v)
      seen.add(v)
    raise ValueError(f'{what}: vocabulary_list has duplicates: {dups[:10]}')
  return vocab, d


def categorical_column_with_vocabulary_list(
    key: str, vocabulary_list: Sequence[Any] | None, dtype: Any = None, default_value: int = -1,
    num_oov_buckets: int = 0, hashing: str = 'tf') -> VocabularyListCategoricalColumn:
  """Maps values of feature `key` to their index in `vocabulary_list` (as TF).

  `hashing` picks the OOV-bucket hash ('tf': TF's buckets; 'legacy': jestimator's older hash).

  Example: `categorical_column_with_vocabulary_list('gender', ['Female', 'Male'])`;
  `categorical_column_with_vocabulary_list('relationship', None)` is filled by `analyze()`.
  """
  base.check_key(key, 'categorical_column_with_vocabulary_list')
  what = f"categorical_column_with_vocabulary_list '{key}'"
  hashing_lib.check_hashing(hashing, what)
  if vocabulary_list is None:
    d = None if dtype is None else base.categorical_dtype(dtype, f'{what}: dtype')
    _check_oov(default_value, num_oov_buckets, None, what)
    return VocabularyListCategoricalColumn(key, None, d, int(default_value), int(num_oov_buckets),
                                           hashing)
  vocab, d = _normalise_vocab(vocabulary_list, dtype, what)
  _check_oov(default_value, num_oov_buckets, len(vocab), what)
  return VocabularyListCategoricalColumn(key, vocab, d, int(default_value), int(num_oov_buckets),
                                         hashing)


@functools.lru_cache(maxsize=64)
def _read_lines(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
  del mtime_ns, size  # part of the cache key only: a rewritten file is read again
  with open(path, encoding='utf-8') as f:
    return tuple(line.rstrip('\r\n') for line in f)


def read_vocabulary_file(path: str, what: str) -> tuple[str, ...]:
  """The lines of a vocabulary file, read once per file version; missing/empty files are errors."""
  if not os.path.isfile(path):
    raise ValueError(f'{what}: vocabulary_file {path!r} does not exist')
  st = os.stat(path)
  lines = _read_lines(os.path.abspath(path), st.st_mtime_ns, st.st_size)
  if not lines:
    raise ValueError(f'{what}: vocabulary_file {path!r} is empty')
  return lines


@dataclasses.dataclass(frozen=True)
class VocabularyFileCategoricalColumn(base.CategoricalColumn):
  """Ids from a vocabulary file, one entry per line (line i is id i); OOV handling as the list."""
  key: str
  vocabulary_file: str
  vocabulary_size: int
  dtype: str = 'string'
  default_value: int | None = None
  num_oov_buckets: int = 0
  hashing: str = 'tf'

  _tf_name = 'categorical_column_with_vocabulary_file'

  @property
  def name(self) -> str:
    return self.key

  @property
  def num_buckets(self) -> int:
    return self.vocabulary_size + self.num_oov_buckets

  def vocabulary(self) -> tuple:
    """Reads (once) and returns the first `vocabulary_size` entries of the file."""
    what = f"categorical_column_with_vocabulary_file '{self.key}'"
    lines = read_vocabulary_file(self.vocabulary_file, what)
    if len(lines) < self.vocabulary_size:
      raise ValueError(f'{what}: vocabulary_size is {self.vocabulary_size} but '
                       f'{self.vocabulary_file!r} has only {len(lines)} lines')
    vocab = lines[:self.vocabulary_size]
    if self.dtype == 'int64':
      try:
        return tuple(int(v) for v in vocab)
      except ValueError as e:
        raise ValueError(f'{what}: dtype is int64 but {self.vocabulary_file!r} has a line that is '
                         f'not an integer ({e})') from e
    return vocab


def categorical_column_with_vocabulary_file(
    key: str, vocabulary_file: str, vocabulary_size: int | None = None, dtype: Any = str,
    default_value: int | None = None, num_oov_buckets: int = 0, hashing: str = 'tf'
) -> VocabularyFileCategoricalColumn:
  """Like the list version, with the vocabulary in a text file (one entry per line; as TF).

  The file is read when the column is made (to count lines unless `vocabulary_size` is given) and
  once more by the host stage; a missing or empty file is an error.
  """
  base.check_key(key, 'categorical_column_with_vocabulary_file')
  what = f"categorical_column_with_vocabulary_file '{key}'"
  hashing_lib.check_hashing(hashing, what)
  if not isinstance(vocabulary_file, (str, os.PathLike)) or not str(vocabulary_file):
    raise ValueError(f'{what}: vocabulary_file must be a path, got {vocabulary_file!r}')
  vocabulary_file = os.fspath(vocabulary_file)
  lines = read_vocabulary_file(vocabulary_file, what)
  if vocabulary_size is None:
    vocabulary_size = len(lines)
  vocabulary_size = base.check_positive_int(vocabulary_size, f'{what}: vocabulary_size')
  if vocabulary_size > len(lines):
    raise ValueError(f'{what}: vocabulary_size is {vocabulary_size} but {vocabulary_file!r} has '
                     f'only {len(lines)} lines')
  d = base.categorical_dtype(dtype, f'{what}: dtype')
  _check_oov(default_value, num_oov_buckets, vocabulary_size, what)
  col = VocabularyFileCategoricalColumn(key, vocabulary_file, vocabulary_size, d,
                                        None if default_value is None else int(default_value),
                                        int(num_oov_buckets), hashing)
  vocab = col.vocabulary()
  if len(set(vocab)) != len(vocab):
    raise ValueError(f'{what}: {vocabulary_file!r} has duplicate entries')
  return col


@dataclasses.dataclass(frozen=True)
class IdentityCategoricalColumn(base.CategoricalColumn):
  """Integer values used as ids directly.

  Without `default_value`, ids >= num_buckets are an error and negative ids are dropped; with it,
  out-of-range ids map to `default_value` (in a dense input -1 still means "no value"; in a sparse
  input it is a value and maps to `default_value`, as in TF).
  """
  key: str
  num_buckets: int
  default_value: int | None = None

  _tf_name = 'categorical_column_with_identity'

  @property
  def name(self) -> str:
    return self.key


def categorical_column_with_identity(key: str, num_buckets: int,
                                     default_value: int | None = None) -> IdentityCategoricalColumn:
  """Integer feature `key` whose values are already ids in `[0, num_buckets)` (as TF).

  Example: `categorical_column_with_identity('day_of_week', 7)`.
  """
  base.check_key(key, 'categorical_column_with_identity')
  what = f"categorical_column_with_identity '{key}'"
  n = base.check_positive_int(num_buckets, f'{what}: num_buckets')
  if default_value is not None:
    if isinstance(default_value, bool) or not isinstance(default_value, (int, np.integer)) \
        or not 0 <= default_value < n:
      raise ValueError(f'{what}: default_value must be an id in [0, {n}), got {default_value!r}')
    default_value = int(default_value)
  return IdentityCategoricalColumn(key, n, default_value)


@dataclasses.dataclass(frozen=True)
class HashedCategoricalColumn(base.CategoricalColumn):
  """Ids `fingerprint(value) % hash_bucket_size` (see `jestimator.columns.hashing`).

  `hashing='tf'`: TF's `to_hash_bucket_fast` buckets exactly; `'legacy'`: jestimator's older hash.
  """
  key: str
  hash_bucket_size: int
  dtype: str = 'string'
  hashing: str = 'tf'

  _tf_name = 'categorical_column_with_hash_bucket'

  @property
  def name(self) -> str:
    return self.key

  @property
  def num_buckets(self) -> int:
    return self.hash_bucket_size


def categorical_column_with_hash_bucket(key: str, hash_bucket_size: int, dtype: Any = str,
                                        hashing: str = 'tf') -> HashedCategoricalColumn:
  """Hashes values of `key` into `hash_bucket_size` buckets (integers hash as decimal strings).

  With the default `hashing='tf'` the buckets are TF's exactly ('' and -1 are missing values in a
  dense input, values in a sparse one, as in TF); `hashing='legacy'` keeps the buckets of models made before TF compatibility.

  Example: `categorical_column_with_hash_bucket('occupation', 1000)`.
  """
  base.check_key(key, 'categorical_column_with_hash_bucket')
  what = f"categorical_column_with_hash_bucket '{key}'"
  size = base.check_positive_int(hash_bucket_size, f'{what}: hash_bucket_size')
  return HashedCategoricalColumn(key, size, base.categorical_dtype(dtype, f'{what}: dtype'),
                                 hashing_lib.check_hashing(hashing, what))


@dataclasses.dataclass(frozen=True)
class WeightedCategoricalColumn(base.CategoricalColumn):
  """A categorical column whose ids carry float weights from feature `weight_feature_key`.

  The weights line up with the ids value by value (same ragged structure). Embeddings and
  `LinearModel` use them in the combiner: with 'sum' every entry counts (a negative weight
  subtracts); 'mean' and 'sqrtn' drop entries with weight <= 0, as TF 2.15's safe embedding lookup
  does. `indicator_column` sums them per bucket, negative ones included.
  """
  categorical_column: base.CategoricalColumn
  weight_feature_key: str
  dtype: str = 'float32'

  _tf_name = 'weighted_categorical_column'

  @property
  def name(self) -> str:
    return f'{self.categorical_column.name}_weighted_by_{self.weight_feature_key}'

  @property
  def num_buckets(self) -> int:
    return self.categorical_column.num_buckets


def weighted_categorical_column(categorical_column: base.CategoricalColumn, weight_feature_key: str,
                                dtype: Any = 'float32') -> WeightedCategoricalColumn:
  """Attaches per-value weights (feature `weight_feature_key`) to a categorical column (as TF).

  Example: `weighted_categorical_column(categorical_column_with_vocabulary_list('terms', vocab),
  'frequencies')` with rows like `terms=[['a', 'b']], frequencies=[[0.5, 2.0]]`.
  """
  from jestimator.columns.sequence import SequenceCategoricalColumn  # a cycle otherwise
  if not isinstance(categorical_column, base.CategoricalColumn) or \
      isinstance(categorical_column, (WeightedCategoricalColumn, SequenceCategoricalColumn)):
    raise base.ColumnTypeError(
        'weighted_categorical_column: categorical_column must be a (non-weighted, '
        f'non-sequence) categorical column, got {categorical_column!r:.100}')
  what = f"weighted_categorical_column '{categorical_column.name}_weighted_by_{weight_feature_key}'"
  base.check_key(weight_feature_key, f'{what}: weight_feature_key')
  if dtype is None:  # numpy would read None as float64; TF refuses it
    raise base.ColumnTypeError(f'{what}: dtype must be a float dtype, got None')
  d = base.canonical_dtype(dtype, f'{what}: dtype')
  if d == 'string' or np.dtype(d).kind != 'f':
    raise base.ColumnTypeError(f'{what}: dtype must be a float dtype, got {dtype!r}')
  return WeightedCategoricalColumn(categorical_column, weight_feature_key, d)
