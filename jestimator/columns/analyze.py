"""`analyze()`: fill the parts of columns that need the data (beyond TF; what TF Transform did).

- `categorical_column_with_vocabulary_list(key, None)` (also inside sequence, embedding, indicator,
  weighted, crossed and shared columns): the vocabulary, most frequent first (ties by value),
  optionally cut to `top_k` entries and to values seen at least `min_frequency` times;
- `numeric_column(..., normalizer='zscore')`: mean and (population) std over all elements;
- `bucketized_column(..., boundaries='quantiles', num_buckets=N)`: boundaries at the 1/N ... (N-1)/N
  quantiles (numpy's linear interpolation; duplicates merged) of the source values *after* the
  source's normalizer, since bucketization sees normalized values (as in TF).
The result is a list of fully specified columns, ready for `to_json`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

from jestimator.columns import _parse, base, categorical, numeric

_Data = Mapping[str, Any] | Iterable[Any] | Callable[[], Iterable[Any]]


def _batches(data: _Data) -> Iterable[Mapping[str, Any]]:
  if isinstance(data, Mapping):
    yield data
    return
  if callable(data):
    data = data()
    if isinstance(data, Mapping):
      yield data
      return
  for item in data:
    if isinstance(item, tuple) and item and isinstance(item[0], Mapping):
      item = item[0]  # (features, labels) from an input_fn
    if not isinstance(item, Mapping):
      raise base.ColumnTypeError(
          f'analyze: data must be a dict of arrays or an iterable of such dicts (or of '
          f'(features, labels) pairs), got an item of type {type(item).__name__}')
    yield item


def _flat_values(key: str, value, what: str) -> np.ndarray:
  arr = _parse.to_array(key, value)
  if isinstance(arr, _parse.SparseInput):
    return arr.values
  if _parse.is_ragged(key, arr, what):
    arr, _ = _parse.flatten_ragged(arr)
  return arr.reshape(-1)


def _value_counts(key: str, value, dtype: str | None, what: str) -> tuple[np.ndarray, np.ndarray]:
  """(distinct present values, their counts) of a categorical feature in one batch."""
  flat = _flat_values(key, value, what)
  kind = flat.dtype.kind
  if dtype is None:
    dtype = 'string' if kind in 'US' or (kind == 'O' and any(
        isinstance(x, (str, bytes)) for x in flat[:1000])) else 'int64'
  if dtype == 'string':
    if kind == 'O':
      codes, uniques = _parse._factorize(flat)
      counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
      if not all(isinstance(u, (str, bytes)) for u in uniques[counts > 0]):
        raise base.ColumnTypeError(f"{what}: feature '{key}' must hold strings")
      vals = np.array([u.decode('utf-8') if isinstance(u, bytes) else u for u in uniques] or [''],
                      dtype=str)[:len(uniques)]
      vals, counts = vals[counts > 0], counts[counts > 0]
    elif kind in 'US':
      vals, counts = np.unique(np.char.decode(flat, 'utf-8') if kind == 'S' else flat,
                               return_counts=True)
    else:
      raise base.ColumnTypeError(
          f"{what}: feature '{key}' holds {flat.dtype} values; the vocabulary is of "
          'strings (pass dtype=int64 for integer features)')
    keep = vals != ''
    return vals[keep], counts[keep]
  v, ok = _parse.flat_ints(key, flat, what)
  return np.unique(v[ok], return_counts=True)


def _merge_counts(acc, new):
  if acc is None:
    return new
  vals = np.concatenate([acc[0], new[0]])
  uniq, inv = np.unique(vals, return_inverse=True)
  counts = np.bincount(inv, weights=np.concatenate([acc[1], new[1]]).astype(np.float64))
  return uniq, counts.astype(np.int64)


def _per_key(option, key: str, name: str):
  if option is None or isinstance(option, (int, np.integer)):
    return option
  if isinstance(option, Mapping):
    return option.get(key)
  raise base.ColumnTypeError(
      f'analyze: {name} must be an int or a dict of feature key -> int, got {option!r}')


def _vocabulary(col, counts, top_k, min_frequency) -> categorical.VocabularyListCategoricalColumn:
  what = col.describe()
  if counts is None or counts[0].size == 0:
    raise ValueError(f"{what}: analyze found no values of feature '{col.key}' to build a vocabulary")
  vals, cnt = counts
  order = np.lexsort((vals, -cnt))  # most frequent first, ties by value
  vals, cnt = vals[order], cnt[order]
  mf = _per_key(min_frequency, col.key, 'min_frequency')
  if mf is not None:
    vals, cnt = vals[cnt >= mf], cnt[cnt >= mf]
  k = _per_key(top_k, col.key, 'top_k')
  if k is not None:
    vals = vals[:base.check_positive_int(k, f'analyze: top_k for {col.key!r}')]
  if vals.size == 0:
    raise ValueError(f'{what}: no value of feature {col.key!r} occurs min_frequency={mf} times')
  vocab = tuple(vals.tolist())
  dtype = 'string' if vals.dtype.kind == 'U' else 'int64'
  if col.default_value >= len(vocab):
    raise ValueError(f'{what}: default_value {col.default_value} is outside the analysed '
                     f'vocabulary of size {len(vocab)}')
  return categorical.VocabularyListCategoricalColumn(col.key, vocab, dtype, col.default_value,
                                                     col.num_oov_buckets, col.hashing)


class _Moments:
  """Mean/variance over batches (Chan et al.'s parallel update, float64); NaNs skipped."""

  def __init__(self):
    self.n, self.mean, self.m2 = 0, 0.0, 0.0

  def update(self, x: np.ndarray):
    x = x[~np.isnan(x)].astype(np.float64)
    if not x.size:
      return
    n, mean = x.size, float(x.mean())
    m2 = float(((x - mean) ** 2).sum())
    tot = self.n + n
    delta = mean - self.mean
    self.mean += delta * n / tot
    self.m2 += m2 + delta * delta * self.n * n / tot
    self.n = tot


def analyze(columns, data: _Data, *, top_k: int | Mapping[str, int] | None = None,
            min_frequency: int | Mapping[str, int] | None = None) -> list[base.FeatureColumn]:
  """Returns new, fully specified columns with statistics computed from `data`.

  `data`: a dict of whole-dataset arrays, an iterable of such batches (or `(features, labels)`
  pairs), or a callable returning one (an `input_fn`); it is read once. `top_k` / `min_frequency`
  apply to vocabularies (an int for all, or a dict by feature key). Columns that need nothing are
  returned unchanged.

  Example:
    cols = [numeric_column('age', normalizer='zscore'),
            bucketized_column(numeric_column('hours'), 'quantiles', num_buckets=4),
            indicator_column(categorical_column_with_vocabulary_list('workclass', None))]
    cols = analyze(cols, {'age': ages, 'hours': hours, 'workclass': workclass}, top_k=100)
    text = to_json(cols)
  """
  cols = base.as_column_list(columns, 'analyze')
  vocab_cols, zscore, quantile = {}, {}, {}
  for c in base.walk(cols):
    if isinstance(c, categorical.VocabularyListCategoricalColumn) and not c.is_analyzed:
      vocab_cols.setdefault(c.key, c.dtype)
    elif isinstance(c, numeric.NumericColumn) and c.normalizer == 'zscore' and not c.is_analyzed:
      zscore[(c.key, c.shape, c.default_value)] = c
    elif isinstance(c, numeric.BucketizedColumn) and not c.is_analyzed:
      s = c.source_column
      quantile[(s.key, s.shape, s.default_value)] = s
  counts: dict[str, Any] = {k: None for k in vocab_cols}
  moments = {k: _Moments() for k in zscore}
  values: dict[Any, list[np.ndarray]] = {k: [] for k in quantile}
  for batch in _batches(data):
    for key, dtype in vocab_cols.items():
      counts[key] = _merge_counts(counts[key], _value_counts(
          key, _require(batch, key), dtype, f"analyze: vocabulary of '{key}'"))
    for spec in set(zscore) | set(quantile):
      c = zscore.get(spec) or quantile[spec]
      x = _parse.parse_numeric(c.key, _require(batch, c.key), c.shape, c.default_value,
                               f'analyze: {c.describe()}')
      if spec in moments:
        moments[spec].update(x)
      if spec in values:
        values[spec].append(x.reshape(-1))

  def fill(c: base.FeatureColumn) -> base.FeatureColumn:
    if isinstance(c, categorical.VocabularyListCategoricalColumn) and not c.is_analyzed:
      return _vocabulary(c, counts[c.key], top_k, min_frequency)
    if isinstance(c, numeric.NumericColumn) and c.normalizer == 'zscore' and not c.is_analyzed:
      m = moments[(c.key, c.shape, c.default_value)]
      if m.n == 0:
        raise ValueError(f"{c.describe()}: analyze found no values of feature '{c.key}'")
      return numeric.NumericColumn(c.key, c.shape, c.default_value, c.dtype, None, 'zscore',
                                   m.mean, float(np.sqrt(m.m2 / m.n)))
    if isinstance(c, numeric.BucketizedColumn) and not c.is_analyzed:
      s = c.source_column
      x = np.concatenate(values[(s.key, s.shape, s.default_value)] or [np.zeros(0)])
      x = np.asarray(s.normalize(x), np.float64)
      x = x[~np.isnan(x)]
      if not x.size:
        raise ValueError(f"{c.describe()}: analyze found no values of feature '{s.key}'")
      qs = np.quantile(x, np.arange(1, c.quantiles) / c.quantiles)
      return numeric.BucketizedColumn(s, tuple(float(b) for b in np.unique(qs)), c.quantiles)
    return c

  return [base.map_columns(c, fill) for c in cols]


def _require(batch: Mapping[str, Any], key: str):
  if key not in batch:
    raise ValueError(f"analyze: feature '{key}' is missing from the data; it has keys "
                     f'{sorted(map(str, batch))}')
  return batch[key]
