"""analyze(): vocabularies, z-score statistics and quantile boundaries against numpy."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import jestimator.columns as fc


def _data(n=2000, seed=0):
  rng = np.random.default_rng(seed)
  words = np.array(['a', 'b', 'c', 'd', 'e', 'f'])
  return {
      'w': words[rng.choice(6, n, p=[.4, .25, .15, .1, .06, .04])],
      'x': rng.normal(5.0, 3.0, n).astype(np.float32),
      'h': rng.exponential(10.0, n).astype(np.float32),
      'n': rng.integers(0, 50, n),
  }


def test_vocabulary_by_frequency_with_top_k_and_min_frequency():
  data = _data()
  col = fc.categorical_column_with_vocabulary_list('w', None)
  with pytest.raises(ValueError, match='run jestimator.columns.analyze'):
    fc.host_stage([col])
  counts = collections.Counter(data['w'].tolist())
  by_freq = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
  (full,) = fc.analyze([col], data)
  assert full.vocabulary_list == tuple(by_freq) and full.dtype == 'string'
  (top,) = fc.analyze([col], data, top_k=3)
  assert top.vocabulary_list == tuple(by_freq[:3])
  threshold = sorted(counts.values())[2]  # keeps the 4 most frequent
  (frequent,) = fc.analyze([col], data, min_frequency={'w': threshold})
  assert frequent.vocabulary_list == tuple(w for w in by_freq if counts[w] >= threshold)
  ints = fc.categorical_column_with_vocabulary_list('n', None, num_oov_buckets=2)
  (filled,) = fc.analyze([ints], data, top_k=5)
  c = collections.Counter(data['n'].tolist())
  assert filled.vocabulary_list == tuple(
      v for v, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
  assert filled.dtype == 'int64' and filled.num_buckets == 7


def test_missing_values_are_not_vocabulary_entries():
  col = fc.categorical_column_with_vocabulary_list('w', None)
  raw = {'w': np.array(['a', None, 'b', 'a', np.nan, ''], dtype=object)}
  assert fc.analyze([col], raw)[0].vocabulary_list == ('a', 'b')
  ragged = {'w': [['b', 'c'], [], None, ['c']]}
  assert fc.analyze([col], ragged)[0].vocabulary_list == ('c', 'b')


def test_zscore_and_quantiles_match_numpy_and_batches_equal_whole():
  data = _data()
  z = fc.numeric_column('x', normalizer='zscore')
  q = fc.bucketized_column(fc.numeric_column('h'), 'quantiles', num_buckets=4)
  zq = fc.bucketized_column(fc.numeric_column('x', normalizer='zscore'), 'quantiles',
                            num_buckets=5)
  out = fc.analyze([z, q, zq], data)
  x64, h64 = data['x'].astype(np.float64), data['h'].astype(np.float64)
  assert out[0].mean == pytest.approx(x64.mean(), rel=1e-12)
  assert out[0].std == pytest.approx(x64.std(), rel=1e-10)
  np.testing.assert_allclose(out[1].boundaries, np.quantile(h64, [.25, .5, .75]), rtol=1e-12)
  normed = (data['x'] - np.float32(x64.mean())) / np.float32(x64.std())
  np.testing.assert_allclose(out[2].boundaries, np.quantile(normed.astype(np.float64),
                                                            [.2, .4, .6, .8]), rtol=1e-6)
  assert out[2].source_column == out[0]
  batches = [{k: v[i:i + 300] for k, v in data.items()} for i in range(0, 2000, 300)]
  again = fc.analyze([z, q, zq], iter(batches))
  assert again[0].mean == pytest.approx(out[0].mean, rel=1e-12)
  assert again[0].std == pytest.approx(out[0].std, rel=1e-12)
  assert again[1] == out[1]
  # (features, labels) pairs from an input_fn are accepted too
  assert fc.analyze([q], lambda: ((b, None) for b in batches))[0] == out[1]


def test_nested_and_shared_columns_are_filled_consistently():
  data = _data(300)
  w = fc.categorical_column_with_vocabulary_list('w', None)
  cols = [fc.embedding_column(w, 4), fc.indicator_column(w),
          fc.crossed_column([w, 'n'], 100), *fc.shared_embeddings([w], 3)]
  out = fc.analyze(cols, data, top_k=4)
  vocabs = {c.vocabulary_list for c in fc.base.walk(out)
            if isinstance(c, fc.VocabularyListCategoricalColumn)}
  assert len(vocabs) == 1 and len(next(iter(vocabs))) == 4
  assert [c.name for c in out] == [c.name for c in cols]
  fc.host_stage(out)(data)  # fully specified now
  untouched = [fc.numeric_column('x')]
  assert fc.analyze(untouched, data) == untouched


def test_analyze_errors():
  col = fc.categorical_column_with_vocabulary_list('w', None)
  with pytest.raises(ValueError, match=r"feature 'w' is missing from the data; it has keys \['x'\]"):
    fc.analyze([col], {'x': [1.0]})
  with pytest.raises(ValueError, match='found no values'):
    fc.analyze([col], {'w': ['', '']})
  with pytest.raises(ValueError, match='occurs min_frequency=99 times'):
    fc.analyze([col], {'w': ['a']}, min_frequency=99)
