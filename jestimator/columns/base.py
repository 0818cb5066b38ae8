"""Base classes of feature columns, dtype names and column-tree helpers.

A feature column is a small immutable description (a frozen dataclass) of how to read one raw input
and what it becomes in the model. Columns hold no arrays: vocabularies and boundaries are tuples, so a
column is hashable, comparable and serialisable to JSON (`jestimator.columns.to_json`).

Three roles, as in `tf.feature_column`:
- `DenseColumn`: yields a dense `[batch, output_dim]` float block in `DenseFeatures` (numeric,
  bucketized, embedding, indicator).
- `CategoricalColumn`: yields integer ids in `[0, num_buckets)` per example (vocabulary, identity,
  hash bucket, crossed, weighted, bucketized). They feed `LinearModel` directly, or `DenseFeatures`
  through `embedding_column` / `indicator_column`.
- `SequenceColumn`: per-timestep inputs for `SequenceFeatures`.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np


class ColumnTypeError(TypeError, ValueError):
  """A value of the wrong type or dtype given to a feature column (argument or raw feature).

  Both a `TypeError` (what the check is about) and a `ValueError`, the class TF's feature columns
  raise for most of these checks, so ported `except ValueError` / `assertRaises(ValueError)` code
  catches it too (as numpy's `AxisError` is both a `ValueError` and an `IndexError`).
  """


class FeatureColumn(abc.ABC):
  """Base class of every column. Subclasses are frozen dataclasses."""

  @property
  @abc.abstractmethod
  def name(self) -> str:
    """The column's name; Flax parameter names and concatenation order follow it (as in TF)."""

  def build_host_stage(self, feature_columns: Sequence[FeatureColumn]) -> Any:
    """The host stage of `feature_columns` (this column among them): `columns.host_stage`.

    The core's `Estimator(feature_columns=...)` builds its host stage through this method
    (`jestimator.pipeline.host_stage.ColumnsProtocol`), so the driver never imports the columns.
    """
    from jestimator.columns import host  # deferred: host builds on this module
    return host.host_stage(list(feature_columns))

  @property
  def parents(self) -> tuple[FeatureColumn, ...]:
    """The columns this one is built on (empty for leaf columns)."""
    out = []
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if isinstance(v, FeatureColumn):
        out.append(v)
      elif isinstance(v, tuple):
        out.extend(x for x in v if isinstance(x, FeatureColumn))
    return tuple(out)

  @property
  def parse_example_spec(self) -> dict:
    """`{key: FixedLenFeature | VarLenFeature}` this column reads from a tf.Example (as TF)."""
    from jestimator.columns.parse_spec import column_parse_spec  # parse_spec imports this module
    return column_parse_spec(self)

  def describe(self) -> str:
    """`<constructor> '<name>'`, for error messages."""
    return f"{getattr(self, '_tf_name', type(self).__name__)} '{self.name}'"


class DenseColumn(FeatureColumn):
  """A column that `DenseFeatures` turns into a `[batch, output_dim]` float32 block."""

  @property
  @abc.abstractmethod
  def output_dim(self) -> int:
    """Width of this column's block in the concatenated dense input."""


class CategoricalColumn(FeatureColumn):
  """A column whose value per example is a bag of integer ids in `[0, num_buckets)`.

  Every subclass has `num_buckets`: the number of distinct ids (rows of an embedding table or of a
  linear weight). It is a plain attribute (not declared here) so that a dataclass may make it a field.
  """


class SequenceColumn(FeatureColumn):
  """Marker for columns consumed by `SequenceFeatures` (`[batch, time, ...]` inputs)."""


# ---------------------------------------------------------------------------------------------
# dtypes are stored as canonical strings so that columns stay hashable and JSON-friendly.

def canonical_dtype(dtype: Any, what: str) -> str:
  """Maps `str`, `tf.string`, `np.int64`, `'float32'`, ... to `'string'`, `'int64'`, `'float32'`, ...

  `what` names the argument in error messages.
  """
  if dtype in (str, bytes, np.str_, np.bytes_, object, 'string', 'str', 'bytes'):
    return 'string'
  name = getattr(dtype, 'name', None)
  if name == 'string':  # tf.string and look-alikes
    return 'string'
  try:
    d = np.dtype(name if isinstance(name, str) and not isinstance(dtype, np.dtype) else dtype)
  except TypeError as e:
    raise ColumnTypeError(
        f'{what}: unsupported dtype {dtype!r}; expected str, an int or a float dtype') from e
  if d.kind in 'USO':
    return 'string'
  if d.kind in 'iufb':
    return d.name
  raise ColumnTypeError(
      f'{what}: unsupported dtype {dtype!r}; expected str, an int or a float dtype')


def categorical_dtype(dtype: Any, what: str) -> str:
  """Like `canonical_dtype` but restricted to `'string'` and `'int64'` (all ints become int64)."""
  d = canonical_dtype(dtype, what)
  if d == 'string':
    return d
  if np.dtype(d).kind in 'iu':
    return 'int64'
  raise ColumnTypeError(
      f'{what}: categorical columns take string or integer values, got dtype {dtype!r}')


def check_key(key: Any, what: str) -> str:
  """A feature key must be a non-empty string."""
  if not isinstance(key, str) or not key:
    raise ValueError(f'{what}: key must be a non-empty string, got {key!r}')
  return key


def check_positive_int(value: Any, what: str) -> int:
  """Returns `value` as an int, or raises if it is not an integer >= 1."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f'{what} must be an integer >= 1, got {value!r}')
  return int(value)


def check_shape(shape: Any, what: str) -> tuple[int, ...]:
  """Normalises an int or sequence of ints to a tuple of positive ints."""
  if isinstance(shape, (int, np.integer)):
    shape = (shape,)
  try:
    dims = tuple(shape)
  except TypeError as e:
    raise ValueError(f'{what}: shape must be an int or a sequence of ints, got {shape!r}') from e
  if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in dims):
    # TF refuses float dimensions such as [1.0] (TypeError) rather than truncating them
    raise ColumnTypeError(f'{what}: shape dimensions must be integers, got {shape!r}')
  shape = tuple(int(s) for s in dims)
  if not shape or any(s < 1 for s in shape):
    raise ValueError(f'{what}: shape must be a non-empty sequence of positive ints, got {shape!r}')
  return shape


# ---------------------------------------------------------------------------------------------
# Column trees

def walk(columns: Iterable[FeatureColumn]) -> Iterator[FeatureColumn]:
  """Yields every column and, depth first, every column it is built on (duplicates included)."""
  for c in columns:
    yield c
    yield from walk(c.parents)


def map_columns(column: FeatureColumn, fn: Callable[[FeatureColumn], FeatureColumn]) -> FeatureColumn:
  """Rebuilds `column` bottom-up, replacing each column `c` of the tree by `fn(c)`."""
  changes = {}
  for f in dataclasses.fields(column):
    v = getattr(column, f.name)
    if isinstance(v, FeatureColumn):
      nv = map_columns(v, fn)
    elif isinstance(v, tuple) and any(isinstance(x, FeatureColumn) for x in v):
      nv = tuple(map_columns(x, fn) if isinstance(x, FeatureColumn) else x for x in v)
    else:
      continue
    if nv != v:
      changes[f.name] = nv
  if changes:
    column = dataclasses.replace(column, **changes)
  return fn(column)


def as_column_list(feature_columns: Any, what: str) -> tuple[FeatureColumn, ...]:
  """Validates a single column or an iterable of columns and returns a tuple."""
  if isinstance(feature_columns, FeatureColumn):
    feature_columns = (feature_columns,)
  if isinstance(feature_columns, (str, bytes)) or not isinstance(feature_columns, Iterable):
    raise ColumnTypeError(f'{what}: feature_columns must be an iterable of feature columns, got '
                          f'{type(feature_columns).__name__}')
  cols = tuple(feature_columns)
  for c in cols:
    if not isinstance(c, FeatureColumn):
      raise ColumnTypeError(f'{what}: every item of feature_columns must be a feature column (from '
                            f'jestimator.columns), got {type(c).__name__}: {c!r:.80}')
  return cols


def sorted_unique_by_name(cols: tuple[FeatureColumn, ...], what: str) -> list[FeatureColumn]:
  """Columns sorted by name, as TF concatenates them; a repeated name is an error."""
  out = sorted(cols, key=lambda c: c.name)
  for a, b in zip(out, out[1:]):
    if a.name == b.name:
      raise ValueError(f'{what}: duplicate feature column name {a.name!r} ({a.describe()} and '
                       f'{b.describe()}); each column in one layer needs a distinct name')
  return out
