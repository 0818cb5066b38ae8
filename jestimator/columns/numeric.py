"""`numeric_column` and `bucketized_column`."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from jestimator.columns import base

_NORMALIZERS = (None, 'zscore')


@dataclasses.dataclass(frozen=True)
class NumericColumn(base.DenseColumn):
  """Real values of shape `shape` per example; dense output `[batch, prod(shape)]` float32.

  `normalizer='zscore'` subtracts `mean` and divides by `std` (filled by `analyze`);
  `normalizer_fn` (a jnp-compatible callable, as in TF) runs on device after parsing.
  """
  key: str
  shape: tuple[int, ...] = (1,)
  default_value: float | tuple[float, ...] | None = None
  dtype: str = 'float32'
  normalizer_fn: Callable[[Any], Any] | None = None
  normalizer: str | None = None
  mean: float | None = None
  std: float | None = None

  _tf_name = 'numeric_column'

  def __post_init__(self):
    what = f"numeric_column '{self.key}'"
    if self.normalizer not in _NORMALIZERS:
      raise ValueError(f"{what}: normalizer must be None or 'zscore', got {self.normalizer!r}")
    if self.normalizer is not None and self.normalizer_fn is not None:
      raise ValueError(f"{what}: give normalizer='zscore' or normalizer_fn, not both")
    if self.normalizer is None and (self.mean is not None or self.std is not None):
      raise ValueError(f"{what}: mean/std are only used with normalizer='zscore'")
    if (self.mean is None) != (self.std is None):
      raise ValueError(f'{what}: mean and std must be given together')

  @property
  def name(self) -> str:
    return self.key

  @property
  def output_dim(self) -> int:
    return math.prod(self.shape)

  @property
  def is_analyzed(self) -> bool:
    """False while `normalizer='zscore'` still waits for `analyze` to fill mean/std."""
    return self.normalizer != 'zscore' or self.mean is not None

  def dense_values(self, x, where: str, fill_missing: bool = False):
    """`x` (`[batch, ...]`, `prod(shape)` values per example) as `[batch, *shape]` float32 after
    the normalizer, on device or host (jnp or numpy); `where` names the caller in errors.

    `fill_missing`: NaN values take `default_value` first (when it is set), for values that did
    not come through the host stage (which fills them itself).
    """
    x = x.astype(np.float32)
    if x.ndim == 0:
      raise ValueError(f'{where}: {self.describe()}: feature has no batch dimension')
    if x.shape[1:] != self.shape:
      if math.prod(x.shape[1:]) != math.prod(self.shape):
        raise ValueError(f"{where}: {self.describe()}: feature '{self.key}' has shape "
                         f'{tuple(x.shape[1:])} per example, expected {self.shape}')
      x = x.reshape((x.shape[0],) + self.shape)
    if fill_missing and self.default_value is not None:
      fill = np.asarray(self.default_value, np.float32)
      xp = x.__array_namespace__() if hasattr(x, '__array_namespace__') else np  # jnp or numpy
      x = xp.where(
          x != x, fill.reshape(self.shape) if fill.ndim else fill, x)
    return self.normalize(x)

  def normalize(self, x):
    """Applies the z-score or `normalizer_fn` to float32 values (numpy or jax)."""
    if self.normalizer == 'zscore':
      if self.mean is None:
        raise ValueError(f"numeric_column '{self.key}' has normalizer='zscore' but no mean/std "
                         'yet: run jestimator.columns.analyze(columns, data) first')
      std = self.std if self.std > 0 else 1.0  # a constant feature just gets centred
      return (x - np.float32(self.mean)) / np.float32(std)
    if self.normalizer_fn is not None:
      return self.normalizer_fn(x)
    return x


def numeric_column(key: str, shape: int | Sequence[int] = (1,), default_value: Any = None,
                   dtype: Any = 'float32', normalizer_fn: Callable[[Any], Any] | None = None,
                   normalizer: str | None = None) -> NumericColumn:
  """Real-valued feature `key` with per-example `shape`; as `tf.feature_column.numeric_column`.

  `default_value` (a number, or a nested sequence matching `shape`) replaces missing values (None,
  NaN) and a feature absent from the batch; without it those are errors (None) or kept (NaN).
  `normalizer='zscore'` (beyond TF) standardises with a mean/std that `analyze()` computes, so the
  column stays serialisable; `normalizer_fn` is any jnp-compatible callable (not serialisable).

  Example: `numeric_column('age')`, `numeric_column('pixels', shape=(28, 28))`.
  """
  what = f"numeric_column '{key}'"
  base.check_key(key, 'numeric_column')
  shape = base.check_shape(shape, what)
  dtype = base.canonical_dtype(dtype, f'{what}: dtype')
  if dtype == 'string' or np.dtype(dtype).kind not in 'iuf':
    raise base.ColumnTypeError(f'{what}: dtype must be a float or int dtype, got {dtype!r}')
  if normalizer_fn is not None and not callable(normalizer_fn):
    raise base.ColumnTypeError(
        f'{what}: normalizer_fn must be callable, got {type(normalizer_fn).__name__}')
  return NumericColumn(key, shape, _check_default(default_value, shape, what, dtype), dtype,
                       normalizer_fn, normalizer)


def _check_default(default_value: Any, shape: tuple[int, ...], what: str, dtype: str):
  if default_value is None:
    return None
  arr = np.asarray(default_value)
  if arr.dtype.kind not in 'iufb':
    raise base.ColumnTypeError(f'{what}: default_value must be numeric, got {default_value!r}')
  if np.dtype(dtype).kind in 'iu' and arr.dtype.kind == 'f':
    # TF: "default_value must be compatible with dtype" (a TypeError) for any float, 2.0 included
    raise base.ColumnTypeError(f'{what}: default_value {default_value!r} is not compatible with '
                               f'dtype {dtype} (an integer column takes integer defaults)')
  if arr.ndim == 0:
    return float(arr)
  if arr.size != math.prod(shape):
    raise ValueError(f'{what}: default_value has {arr.size} values but shape {shape} needs '
                     f'{math.prod(shape)}')
  return tuple(float(v) for v in arr.reshape(-1))


@dataclasses.dataclass(frozen=True)
class BucketizedColumn(base.DenseColumn, base.CategoricalColumn):
  """Bucket index of each value of a numeric column: dense one-hot or categorical ids.

  Bucket i covers `[boundaries[i-1], boundaries[i])`, so boundaries `[0, 1]` give three buckets
  and -1 -> 0, 0 -> 1, 0.5 -> 1, 1 -> 2, 2 -> 2. As a categorical column an element `j` of a
  multi-dimensional source lands in id `j * (len(boundaries) + 1) + bucket`.
  """
  source_column: NumericColumn
  boundaries: tuple[float, ...] | None = None
  quantiles: int | None = None  # the requested bucket count when boundaries come from analyze()

  _tf_name = 'bucketized_column'

  def __post_init__(self):
    if self.boundaries is None and self.quantiles is None:
      raise ValueError(f"bucketized_column '{self.name}': boundaries are required")

  @property
  def name(self) -> str:
    return f'{self.source_column.name}_bucketized'

  @property
  def is_analyzed(self) -> bool:
    """False while boundaries='quantiles' still waits for `analyze`."""
    return self.boundaries is not None

  def _bounds(self) -> tuple[float, ...]:
    if self.boundaries is None:
      raise ValueError(f"bucketized_column '{self.name}' has boundaries='quantiles' but no "
                       'boundaries yet: run jestimator.columns.analyze(columns, data) first')
    return self.boundaries

  @property
  def buckets_per_element(self) -> int:
    """`len(boundaries) + 1`."""
    return len(self._bounds()) + 1

  @property
  def num_buckets(self) -> int:
    return self.buckets_per_element * self.source_column.output_dim

  @property
  def output_dim(self) -> int:
    return self.num_buckets

  def boundaries_f32(self) -> np.ndarray:
    """Boundaries as float32: host and device both compare in float32, so they always agree."""
    return np.asarray(self._bounds(), np.float32)


def bucketized_column(source_column: NumericColumn, boundaries: Sequence[float] | str,
                      num_buckets: int | None = None) -> BucketizedColumn:
  """Buckets a numeric column by sorted `boundaries`; as `tf.feature_column.bucketized_column`.

  `boundaries='quantiles', num_buckets=N` (beyond TF) leaves the boundaries to `analyze()`, which
  puts them at the data's 1/N, ..., (N-1)/N quantiles (duplicates merged).

  Example: `bucketized_column(numeric_column('age'), [18, 25, 30, 35, 40, 45, 50, 55, 60, 65])`.
  """
  if not isinstance(source_column, NumericColumn):
    raise base.ColumnTypeError('bucketized_column: source_column must be a numeric_column, got '
                               f'{type(source_column).__name__}')
  what = f"bucketized_column '{source_column.name}_bucketized'"
  if len(source_column.shape) != 1:
    raise ValueError(f'{what}: source_column must be one-dimensional (as in TF), got shape '
                     f'{source_column.shape}; reshape the feature, e.g. numeric_column(key, '
                     f'shape={math.prod(source_column.shape)})')
  if isinstance(boundaries, str):
    if boundaries != 'quantiles':
      raise ValueError(f"{what}: boundaries must be a sorted list or 'quantiles', got {boundaries!r}")
    n = base.check_positive_int(num_buckets, f'{what}: num_buckets')
    if n < 2:
      raise ValueError(f'{what}: num_buckets must be >= 2 for quantile boundaries, got {n}')
    return BucketizedColumn(source_column, None, n)
  if num_buckets is not None:
    raise ValueError(f"{what}: num_buckets is only used with boundaries='quantiles'")
  try:
    b = tuple(float(x) for x in boundaries)
  except (TypeError, ValueError) as e:
    raise base.ColumnTypeError(
        f'{what}: boundaries must be a list of numbers, got {boundaries!r:.80}') from e
  if not b:
    raise ValueError(f'{what}: boundaries must not be empty')
  if any(not lo < hi for lo, hi in zip(b, b[1:])):
    raise ValueError(f'{what}: boundaries must be sorted in strictly increasing order, got {list(b)}')
  return BucketizedColumn(source_column, b)
