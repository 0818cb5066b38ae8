"""Host parsing of raw feature values: numbers, strings and ragged (multivalent) rows.

Raw features arrive as numpy arrays (str, bytes, object, numbers), pandas columns or lists, with a
leading batch dimension. A multivalent feature is an object array / list with one list per example.
Everything is vectorised except walking Python lists of ragged rows (done with C-level `map` /
`itertools.chain`), and object arrays of strings are deduplicated first (pandas' factorize when
available) so only distinct values are converted and hashed.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from jestimator.columns import base, hashing

try:  # optional: a C hash table that makes object (pandas) string columns ~4x faster to parse
  import pandas as _pd
except ImportError:  # pragma: no cover
  _pd = None

_LISTS = (list, tuple, np.ndarray)
ABSENT_INT = np.iinfo(np.int64).min  # value of a None / NaN integer (never a real id or -1)
_DEDUP_MIN = 512  # str arrays at least this long are deduplicated before FarmHash


@dataclasses.dataclass
class Parsed:
  """A categorical-style feature padded to `[batch, width]`.

  `values`: uint64 fingerprints (strings), int64 (ints) or float32 (weights); `valid`: bool, False
  for padding and missing values ('' / -1 / None / NaN); `lengths`: `[batch]` raw entries per row
  for ragged input, else None. `width` is a power of two (so varying widths compile only a few
  shapes). None / NaN hold 0 (strings) or `ABSENT_INT` (ints) and padding 0, so `present()` can
  tell the missing-value markers '' and -1 from no value at all.
  """
  values: np.ndarray
  valid: np.ndarray
  lengths: np.ndarray | None
  sparse: bool = False  # from a `SparseInput`: positions are TF's, every stored value is real

  def present(self, empty_fingerprint: int) -> np.ndarray:
    """Like `valid`, but '' (fingerprint `empty_fingerprint`) and -1 count as values.

    TF crosses raw features as they are, so for a crossed column '' is a value like any other.
    """
    marker = np.uint64(empty_fingerprint) if self.values.dtype == np.uint64 else -1
    return self.valid | (self.values == marker)

  def row_lengths(self) -> np.ndarray:
    """Entries per row: the ragged lengths, else the position of the last valid entry + 1."""
    if self.lengths is not None:
      return self.lengths.astype(np.int32)
    valid = self.valid.reshape(self.valid.shape[:2] + (-1,)).any(axis=2)  # a step of [B, T, K]
    w = valid.shape[1]
    last = w - np.argmax(valid[:, ::-1], axis=1)
    return np.where(valid.any(axis=1), last, 0).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class SparseInput:
  """A raw feature given as TF's SparseTensor parts (`VarLenFeature` parsing gives them).

  `indices` `[nnz, rank]` int64 (rank 2: example, position; rank 3: example, step, position),
  `values` `[nnz]`, `dense_shape` `[rank]`. Every stored value is a real value, as in TF: '' and
  -1 are looked up or hashed like any other, and positions (gaps included) are kept.
  """
  indices: np.ndarray
  values: np.ndarray
  dense_shape: tuple[int, ...]

  @property
  def shape(self) -> tuple[int, ...]:
    return self.dense_shape

  @property
  def rank(self) -> int:
    return len(self.dense_shape)


def is_sparse(value) -> bool:
  """Whether `value` is a sparse input: it has `indices`, `values` and `dense_shape` (TF's
  `SparseTensor` / `SparseTensorValue`, `jestimator.io.to_sparse`'s result)."""
  return all(hasattr(value, a) for a in ('indices', 'values', 'dense_shape'))


def as_sparse(key: str, value) -> SparseInput:
  """Checks a sparse input's parts and returns them as numpy arrays."""
  if isinstance(value, SparseInput):
    return value
  indices = np.asarray(value.indices)
  values = to_array(key, value.values) if np.ndim(value.values) else np.asarray(value.values)
  shape = tuple(int(d) for d in np.asarray(value.dense_shape).reshape(-1))
  if indices.size == 0:
    indices = indices.reshape(0, len(shape))
  if len(shape) not in (2, 3) or indices.ndim != 2 or indices.shape[1] != len(shape) or \
      values.ndim != 1 or values.shape[0] != indices.shape[0] or indices.dtype.kind not in 'iu':
    raise ValueError(f"feature '{key}': a sparse input needs integer indices [nnz, rank], values "
                     f'[nnz] and dense_shape [rank] with rank 2 or 3; got indices of shape '
                     f'{indices.shape}, values of shape {values.shape}, dense_shape {shape}')
  if indices.size and (np.any(indices < 0) or np.any(indices >= np.array(shape))):
    raise ValueError(f"feature '{key}': sparse indices lie outside dense_shape {shape}")
  return SparseInput(indices.astype(np.int64), values, shape)


def _sparse_multi(key: str, sp: SparseInput, what: str, flat_fn) -> Parsed:
  """`[batch, pow2(n)]` (rank 2) or `[batch, pow2(t), pow2(k)]` (rank 3), values at their
  positions; every stored value is valid except None / NaN (TF has no missing-value marker)."""
  v, _ = flat_fn(key, sp.values, what)  # its validity treats '' and -1 as missing: not here
  raw = sp.values
  if raw.dtype.kind == 'O':
    ok = ~(np.equal(raw, None) | np.not_equal(raw, raw))
  elif raw.dtype.kind == 'f':
    ok = ~np.isnan(raw)
  else:
    ok = np.ones(raw.shape, bool)
  shape = (sp.dense_shape[0],) + tuple(pow2(d) for d in sp.dense_shape[1:])
  values = np.zeros(shape, v.dtype)
  valid = np.zeros(shape, bool)
  if sp.values.shape[0]:
    if np.unique(sp.indices, axis=0).shape[0] != sp.indices.shape[0]:
      raise ValueError(f"{what}: sparse feature '{key}' has repeated indices")
    idx = tuple(sp.indices.T)
    values[idx] = v
    valid[idx] = ok
  return Parsed(values, valid, None, sparse=True)


def pow2(n: int) -> int:
  """Smallest power of two >= max(n, 1)."""
  return 1 << max(0, int(n) - 1).bit_length()


def to_array(key: str, value) -> np.ndarray | SparseInput:
  """`np.asarray`, falling back to a 1-D object array for ragged lists of lists; a sparse input
  (`is_sparse`) comes back as a `SparseInput`."""
  if isinstance(value, np.ndarray):
    return value
  if is_sparse(value):
    return as_sparse(key, value)
  if hasattr(value, 'to_numpy'):  # pandas
    return value.to_numpy()
  try:
    arr = np.asarray(value)
  except ValueError:  # numpy 2 refuses inhomogeneous nesting: ragged rows
    arr = np.fromiter(value, dtype=object, count=len(value))
  if arr.ndim == 0:
    raise ValueError(f"feature '{key}' must have a leading batch dimension, got a scalar "
                     f'{value!r:.60}')
  return arr


def is_ragged(key: str, arr: np.ndarray, what: str) -> bool:
  """True for an object array whose rows are lists (None rows count as empty)."""
  if arr.dtype != object or arr.ndim != 1 or arr.size == 0:
    return False
  types = set(map(type, arr))
  listy = {t for t in types if issubclass(t, _LISTS)}
  if not listy:
    return False
  others = types - listy - {type(None)}
  if others:
    raise base.ColumnTypeError(
        f"{what}: feature '{key}' mixes lists and scalars "
        f'({sorted(t.__name__ for t in others)}) across examples; give every '
        'example a list (or None for no value)')
  return True


def flatten_ragged(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(`[n_total]` flat values, `[batch]` int64 lengths) of an object array of lists."""
  if any(x is None for x in arr):  # C-level scan; only then copy and fill empty rows
    arr = arr.copy()
    for i in np.flatnonzero(np.equal(arr, None)):
      arr[i] = ()
  lengths = np.fromiter(map(len, arr), dtype=np.int64, count=arr.shape[0])
  flat = list(itertools.chain.from_iterable(arr))
  try:
    values = np.asarray(flat)
  except ValueError:
    values = np.fromiter(flat, dtype=object, count=len(flat))
  return values, lengths


def scatter_ragged(values: np.ndarray, lengths: np.ndarray, fill, width: int) -> np.ndarray:
  """Places flat per-row values into a `[batch, width, ...]` array padded with `fill`."""
  b = lengths.shape[0]
  out = np.full((b, width) + values.shape[1:], fill, dtype=values.dtype)
  if values.shape[0]:
    rows = np.repeat(np.arange(b), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(values.shape[0]) - np.repeat(starts, lengths)
    out[rows, cols] = values
  return out


def _factorize(flat: np.ndarray, pd=_pd) -> tuple[np.ndarray, np.ndarray]:
  """(codes, uniques) of a 1-D object array; missing values (None, NaN) get code -1.

  `pd`: the pandas module, or None to use numpy only (without pandas, `uniques` are the values
  themselves, missing ones filled with '').
  """
  if pd is not None:
    codes, uniques = pd.factorize(flat, use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)
  missing = np.equal(flat, None) | np.not_equal(flat, flat)
  codes = np.arange(flat.shape[0])
  codes[missing] = -1
  filled = flat.copy()
  filled[missing] = ''
  return codes, filled


def _type_error(key: str, what: str, expected: str, bad) -> base.ColumnTypeError:
  return base.ColumnTypeError(
      f"{what}: feature '{key}' must hold {expected}, got {type(bad).__name__} "
      f'(e.g. {bad!r:.40})')


def _object_strings(key: str, flat: np.ndarray, what: str,
                    hashing_fn: str, pd=_pd) -> tuple[np.ndarray, np.ndarray]:
  codes, uniques = _factorize(flat, pd)
  used = uniques if pd is not None else uniques[codes >= 0]
  types = set(map(type, used))
  if not all(issubclass(t, (str, bytes)) for t in types):
    bad = next(u for u in used if not isinstance(u, (str, bytes)))
    raise _type_error(key, what, 'strings (this column has dtype string)', bad)
  if any(issubclass(t, bytes) for t in types):
    uniques = np.array([u.decode('utf-8') if isinstance(u, bytes) else u for u in uniques],
                       dtype=object)
  u = uniques.astype(str) if uniques.size else np.zeros(1, '<U1')
  fp = np.where(codes >= 0, hashing.fingerprint_strings(u, hashing_fn)[np.maximum(codes, 0)],
                np.uint64(0))
  return fp, (codes >= 0) & (fp != np.uint64(hashing.empty_fingerprint(hashing_fn)))


def flat_strings(key: str, flat: np.ndarray, what: str,
                 hashing_fn: str = 'tf', pd=_pd) -> tuple[np.ndarray, np.ndarray]:
  """(uint64 fingerprints, valid) of a 1-D array of strings; '' / None / NaN are missing.

  `hashing_fn`: 'tf' or 'legacy' (see `jestimator.columns.hashing`). `pd`: the pandas module
  (deduplicates before hashing), or None for numpy only; the result is the same.
  """
  kind = flat.dtype.kind
  if kind in 'US' and hashing_fn == 'tf' and pd is not None and flat.size >= _DEDUP_MIN:
    # FarmHash is one C call per value: hash only the distinct values (pandas' hash table)
    return _object_strings(key, flat.astype(object), what, hashing_fn, pd)
  if kind in 'US':
    fp = hashing.fingerprint_strings(flat, hashing_fn)
    # '' is the only string with this fingerprint (up to 2**-64), so no string compare is needed
    return fp, fp != np.uint64(hashing.empty_fingerprint(hashing_fn))
  if kind == 'O':
    return _object_strings(key, flat, what, hashing_fn, pd)
  if flat.size == 0:
    return np.zeros(0, np.uint64), np.zeros(0, bool)
  raise base.ColumnTypeError(
      f"{what}: feature '{key}' holds {flat.dtype} values but the column expects "
      "strings; for integer features create the column with dtype=int64 (or use "
      'categorical_column_with_identity)')


def flat_ints(key: str, flat: np.ndarray, what: str, pd=_pd) -> tuple[np.ndarray, np.ndarray]:
  """(int64 values, valid) of a 1-D integer array; -1 / None / NaN are missing.

  `pd`: the pandas module (deduplicates first), or None for numpy only; the result is the same.
  """
  kind = flat.dtype.kind
  if kind in 'iub':
    v = flat.astype(np.int64, copy=False)
    return v, v != -1
  if kind == 'f':
    ok = ~np.isnan(flat)
    v = np.where(ok, flat, 0)
    if np.any(v != np.floor(v)):
      bad = flat[np.flatnonzero(v != np.floor(v))[0]]
      raise base.ColumnTypeError(
          f"{what}: feature '{key}' must hold integers, got the non-integral {bad!r}")
    v = np.where(ok, v.astype(np.int64), ABSENT_INT)
    return v, ok & (v != -1)
  if kind == 'O':
    codes, uniques = _factorize(flat, pd)
    used = uniques if pd is not None else uniques[codes >= 0]
    for u in used:  # only distinct values are checked
      if isinstance(u, (bool, str, bytes)) or not float(u).is_integer():
        raise _type_error(key, what, 'integers (this column has dtype int64)', u)
    # without pandas, missing entries were filled with '' (their code is -1): map them to 0
    u = np.array([0 if isinstance(x, str) else int(x) for x in uniques] or [0], dtype=np.int64)
    v = np.where(codes >= 0, u[np.maximum(codes, 0)], ABSENT_INT)
    return v, (codes >= 0) & (v != -1)
  if flat.size == 0:
    return np.zeros(0, np.int64), np.zeros(0, bool)
  raise base.ColumnTypeError(
      f"{what}: feature '{key}' holds strings (dtype {flat.dtype}) but the column "
      'expects integers; use a string column (e.g. dtype=str) or convert the feature')


def flat_floats(key: str, flat: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
  """(float32 values, valid) of a 1-D numeric array; None / NaN are missing (value 0)."""
  if flat.dtype.kind in 'USO':
    if flat.dtype.kind == 'O':
      missing = np.equal(flat, None)
      if not any(issubclass(t, (str, bytes)) for t in set(map(type, flat[~missing]))):
        v = np.where(missing, np.nan, flat).astype(np.float32)
        ok = ~np.isnan(v)
        return np.where(ok, v, 0).astype(np.float32), ok
    raise base.ColumnTypeError(f"{what}: feature '{key}' holds strings but must hold numbers")
  v = flat.astype(np.float32)
  ok = ~np.isnan(v)
  return np.where(ok, v, 0).astype(np.float32, copy=False), ok


def parse_multi(key: str, value, what: str, flat_fn) -> Parsed:
  """Parses a univalent `[batch]`, regular `[batch, n]`, ragged or sparse feature with `flat_fn`."""
  arr = to_array(key, value)
  if isinstance(arr, SparseInput):
    return _sparse_multi(key, arr, what, flat_fn)
  b = arr.shape[0]
  if is_ragged(key, arr, what):
    flat, lengths = flatten_ragged(arr)
    if flat.ndim != 1:
      raise ValueError(f"{what}: feature '{key}' must hold one value per list entry, got entries "
                       f'of shape {flat.shape[1:]}')
    v, ok = flat_fn(key, flat, what)
    width = pow2(lengths.max(initial=0))
    return Parsed(scatter_ragged(v, lengths, 0, width), scatter_ragged(ok, lengths, False, width),
                  lengths)
  if arr.ndim > 2:
    raise ValueError(f"{what}: feature '{key}' must be [batch], [batch, n] or one list per example, "
                     f'got shape {arr.shape}')
  k = 1 if arr.ndim == 1 else arr.shape[1]
  v, ok = flat_fn(key, arr.reshape(-1), what)
  v, ok = v.reshape(b, k), ok.reshape(b, k)
  width = pow2(k)
  if width != k:
    v = np.pad(v, ((0, 0), (0, width - k)))
    ok = np.pad(ok, ((0, 0), (0, width - k)))
  return Parsed(v, ok, None)


def _object_numbers(key: str, arr: np.ndarray, what: str) -> tuple[np.ndarray, bool]:
  missing = np.equal(arr, None)
  present = arr[~missing]
  if any(issubclass(t, (str, bytes)) for t in set(map(type, present))):
    raise base.ColumnTypeError(
        f"{what}: feature '{key}' holds strings but a numeric column needs numbers; "
        'convert it (astype(float)) or use a categorical column')
  try:
    out = np.where(missing, np.nan, arr).astype(np.float64)
  except (TypeError, ValueError) as e:
    raise base.ColumnTypeError(f"{what}: feature '{key}' must hold numbers ({e})") from e
  return out, bool(missing.any())


def parse_numeric(key: str, value, shape: tuple[int, ...], default, what: str) -> np.ndarray:
  """`[batch, *shape]` float32 values; missing values (None/NaN) take `default` when given."""
  arr = to_array(key, value)
  if isinstance(arr, SparseInput):  # TF's numeric_column refuses a SparseTensor too
    raise ValueError(f"{what}: feature '{key}' is a sparse input, but a numeric column takes "
                     'dense values [batch, *shape] (sequence_numeric_column takes sparse ones)')
  had_none = False
  if arr.dtype.kind in 'USa':
    raise base.ColumnTypeError(
        f"{what}: feature '{key}' holds strings (dtype {arr.dtype}) but a numeric "
        'column needs numbers; convert it (astype(float)) or use a categorical column')
  if arr.dtype == object:
    if is_ragged(key, arr, what):
      flat, lengths = flatten_ragged(arr)
      if not np.all(lengths == math.prod(shape)):
        raise ValueError(f"{what}: feature '{key}' has lists of varying length; expected "
                         f'{math.prod(shape)} values per example (shape {shape}); for sequences '
                         'use sequence_numeric_column')
      arr = flat.reshape(len(lengths), math.prod(shape))
    if arr.dtype == object:
      arr, had_none = _object_numbers(key, arr, what)
  b = arr.shape[0]
  per = arr.shape[1:]
  if per != shape:
    if math.prod(per) != math.prod(shape):
      raise ValueError(f"{what}: feature '{key}' has shape {tuple(per)} per example, expected "
                       f'{shape} (the shape argument)')
    arr = arr.reshape((b,) + shape)
  out = np.asarray(arr, dtype=np.float32)
  if default is not None or had_none:
    nan = np.isnan(out)
    if nan.any():
      if default is None:
        rows = np.flatnonzero(nan.reshape(b, math.prod(shape)).any(axis=1))[:5].tolist()
        raise ValueError(f"{what}: feature '{key}' has missing values (None) in examples {rows} "
                         'and the column has no default_value')
      fill = np.broadcast_to(np.asarray(default, np.float32).reshape(
          () if np.ndim(default) == 0 else shape), out.shape)
      out = np.where(nan, fill, out)
  return np.ascontiguousarray(out)


def _sparse_sequence_numeric(key: str, sp: SparseInput, shape: tuple[int, ...], default: float,
                             what: str) -> tuple[np.ndarray, np.ndarray]:
  """TF's sparse sequence values `[batch, T * prod(shape)]`: `default` fills the gaps, a length is
  the last step holding a value + 1."""
  if sp.rank != 2:
    raise ValueError(f"{what}: sparse feature '{key}' must have rank 2 ([batch, T * "
                     f'{math.prod(shape)}]), got dense_shape {sp.dense_shape}')
  d = math.prod(shape)
  v, ok = flat_floats(key, sp.values, what)
  b, n = sp.dense_shape
  t = -(-n // d)
  flat = np.full((b, t * d), np.float32(default), np.float32)
  rows, cols = sp.indices[:, 0], sp.indices[:, 1]
  flat[rows, cols] = np.where(ok, v, np.float32(default))
  last = np.zeros(b, np.int64)
  np.maximum.at(last, rows, cols // d + 1)
  width = pow2(t)
  out = np.full((b, width, d), np.float32(default), np.float32)
  out[:, :t] = flat.reshape(b, t, d)
  return out.reshape((b, width) + shape), last.astype(np.int32)


def parse_sequence_numeric(key: str, value, shape: tuple[int, ...], default: float,
                           what: str) -> tuple[np.ndarray, np.ndarray]:
  """(`[batch, T, *shape]` float32 padded with `default`, `[batch]` int32 lengths)."""
  arr = to_array(key, value)
  if isinstance(arr, SparseInput):
    return _sparse_sequence_numeric(key, arr, shape, default, what)
  if arr.dtype.kind in 'USa':
    raise base.ColumnTypeError(f"{what}: feature '{key}' holds strings but must hold numbers")
  if is_ragged(key, arr, what):
    flat, lengths = flatten_ragged(arr)
    if flat.dtype == object:
      flat, _ = _object_numbers(key, flat, what)
    flat = flat.astype(np.float32)
    if flat.shape[1:] != shape and not (flat.ndim == 1 and shape == (1,)):
      if flat.ndim == 1 or math.prod(flat.shape[1:]) != math.prod(shape):
        raise ValueError(f"{what}: feature '{key}' has per-step shape {flat.shape[1:]}, "
                         f'expected {shape}')
    flat = flat.reshape((-1,) + shape)
    out = scatter_ragged(flat, lengths, np.float32(default), pow2(lengths.max(initial=0)))
    return out, lengths.astype(np.int32)
  if arr.dtype == object:
    arr, _ = _object_numbers(key, arr, what)
  if arr.ndim == 1 and arr.size == 0:  # an empty batch
    return np.zeros((0, 1) + shape, np.float32), np.zeros(0, np.int32)
  if arr.ndim < 2:
    raise ValueError(f"{what}: feature '{key}' must be one list of steps per example or a "
                     f'[batch, time, ...] array, got shape {arr.shape}')
  b, t = arr.shape[:2]
  per = arr.shape[2:]
  if per != shape and not (per == () and shape == (1,)):
    raise ValueError(f"{what}: feature '{key}' has per-step shape {per}, expected {shape}")
  vals = np.asarray(arr, np.float32).reshape((b, t) + shape)
  width = pow2(t)
  if width != t:
    pad = np.full((b, width - t) + shape, default, np.float32)
    vals = np.concatenate([vals, pad], axis=1)
  return np.ascontiguousarray(vals), np.full(b, t, np.int32)
