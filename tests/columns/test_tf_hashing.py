"""Hash buckets and crosses equal TensorFlow 2.15's exactly (fixtures computed by TF itself)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import jestimator.columns as fc
from jestimator.columns import keys

import _tf_fixtures as tf_fixtures


def ids(col, raw):
  return fc.transform_features(raw, [col])[keys.ids_key(col)]


@pytest.mark.parametrize('size', ['10', '1000', '1000003'])
def test_hash_buckets_equal_tfs(size):
  fx = tf_fixtures.load('hash_bucket.json')
  want = fx['buckets'][size]
  n = int(size)
  strings, ints = np.array(fx['strings']), np.array(fx['ints'], np.int64)
  assert (fc.fingerprint_strings(strings) % np.uint64(n)).tolist() == want['strings']
  assert (fc.fingerprint_ints(ints) % np.uint64(n)).tolist() == want['ints']
  # through the column API: same ids, except TF's missing values ('' and -1) give no id
  scol = fc.categorical_column_with_hash_bucket('s', n)
  got = ids(scol, {'s': np.array(fx['strings'], dtype=object)})[:, 0]
  has_id = fx['column_row_sums']['strings']
  assert (got >= 0).astype(int).tolist() == has_id
  assert got[got >= 0].tolist() == [b for b, k in zip(want['strings'], has_id) if k]
  icol = fc.categorical_column_with_hash_bucket('i', n, dtype=np.int64)
  got = ids(icol, {'i': ints})[:, 0]
  has_id = fx['column_row_sums']['ints']
  assert (got >= 0).astype(int).tolist() == has_id
  assert got[got >= 0].tolist() == [b for b, k in zip(want['ints'], has_id) if k]


def test_indicator_row_sums_equal_tfs():
  fx = tf_fixtures.load('hash_bucket.json')
  col = fc.indicator_column(fc.categorical_column_with_hash_bucket('s', 1000))
  raw = fc.transform_features({'s': np.array(fx['strings'])}, [col])
  layer = fc.DenseFeatures([col])
  dense = np.asarray(layer.apply(layer.init(__import__('jax').random.PRNGKey(0), raw), raw))
  assert dense.sum(axis=1).astype(int).tolist() == fx['column_row_sums']['strings']


def _age_bucketized(fx):
  return fc.bucketized_column(fc.numeric_column('age'), fx['age_boundaries'])


@pytest.mark.parametrize('name', ['s1_x_s2', 'age_x_s1_x_s2', 's1_x_s2_big'])
def test_crosses_equal_tfs(name):
  fx = tf_fixtures.load('crossed.json')
  spec = fx['crosses'][name]
  inputs = [_age_bucketized(fx) if k == 'age_bucketized' else k for k in spec['keys']]
  col = fc.crossed_column(inputs, spec['hash_bucket_size'])
  raw = {'s1': np.array(fx['s1']), 's2': np.array(fx['s2']),
         'age': np.array(fx['age'], np.float32)}
  got = ids(col, raw)
  assert got.shape[1] == 1
  assert got[:, 0].tolist() == spec['ids']


def test_multivalent_cross_equals_tfs_including_order():
  spec = tf_fixtures.load('crossed.json')['crosses']['multivalent']
  col = fc.crossed_column(['s1', 's2'], spec['hash_bucket_size'])
  got = ids(col, {'s1': spec['s1_rows'], 's2': spec['s2_rows']})
  rows = [[int(v) for v in row if v >= 0] for row in got]
  assert rows == spec['ids']  # TF's output order: the last input varies fastest


def test_legacy_columns_keep_their_buckets_and_json():
  # A column serialised before TF-compatible hashing has no 'hashing' field: it loads as legacy,
  # with the same JSON and digest (host keys) as then, and keeps its old buckets.
  old_doc = {'format': 'jestimator.feature_columns', 'version': 1, 'columns': [
      {'column': 'HashedCategoricalColumn', 'key': 'h', 'hash_bucket_size': 1000,
       'dtype': 'string'},
      {'column': 'CrossedColumn', 'keys': ['a', 'b'], 'hash_bucket_size': 100,
       'hash_key': None},
      {'column': 'VocabularyListCategoricalColumn', 'key': 'v', 'vocabulary_list': ['x'],
       'dtype': 'string', 'default_value': -1, 'num_oov_buckets': 4}]}
  cols = fc.from_json(json.dumps(old_doc))
  assert [c.hashing for c in cols] == ['legacy'] * 3
  assert json.loads(fc.to_json(cols)) == old_doc
  old_digest = hashlib.sha1(json.dumps(old_doc['columns'][0], sort_keys=True).encode()).hexdigest()
  assert keys.ids_key(cols[0]) == f'h@{old_digest[:8]}/ids'  # what the old code computed
  assert cols[0] == fc.categorical_column_with_hash_bucket('h', 1000, hashing='legacy')
  # 'hello' lands in bucket 625 with the legacy hash, 296 with TF's
  assert ids(cols[0], {'h': ['hello']})[0, 0] == 625
  assert ids(fc.categorical_column_with_hash_bucket('h', 1000), {'h': ['hello']})[0, 0] == 296
  new = fc.categorical_column_with_hash_bucket('h', 1000)
  assert fc.from_json(fc.to_json([new])) == [new]
  assert json.loads(fc.to_json([new]))['columns'][0]['hashing'] == 'tf'
  assert keys.ids_key(new) != keys.ids_key(cols[0])


def test_hashing_argument_is_checked():
  with pytest.raises(ValueError, match=r"categorical_column_with_hash_bucket 'h'.*hashing must be "
                                       r"one of \('tf', 'legacy'\).*got 'farm'"):
    fc.categorical_column_with_hash_bucket('h', 10, hashing='farm')
  with pytest.raises(ValueError, match='hashing must be one of'):
    fc.crossed_column(['a', 'b'], 10, hashing='TF')
  bad = json.dumps({'format': 'jestimator.feature_columns', 'version': 1, 'columns': [
      {'column': 'HashedCategoricalColumn', 'key': 'h', 'hash_bucket_size': 10,
       'dtype': 'string', 'hashing': 'md5'}]})
  with pytest.raises(ValueError, match='serialised HashedCategoricalColumn.*hashing'):
    fc.from_json(bad)


@pytest.mark.parametrize('encode', [False, True])
def test_long_str_and_bytes_arrays_hash_like_tf(encode):
  # long arrays take the deduplicating path; str and UTF-8 bytes give TF's buckets alike
  fx = tf_fixtures.load('hash_bucket.json')
  strings = np.array(fx['strings'] * 10)
  values = np.char.encode(strings, 'utf-8') if encode else strings
  assert values.size >= 2000 and values.dtype.kind == ('S' if encode else 'U')
  got = ids(fc.categorical_column_with_hash_bucket('s', 1000), {'s': values})[:, 0]
  want = [b if k else -1 for b, k in zip(fx['buckets']['1000']['strings'],
                                         fx['column_row_sums']['strings'])] * 10
  assert got.tolist() == want


def test_analyze_keeps_the_hashing_of_a_vocabulary_column():
  col = fc.categorical_column_with_vocabulary_list('v', None, num_oov_buckets=3, hashing='legacy')
  (done,) = fc.analyze([col], {'v': np.array(['a', 'b', 'a'])})
  assert done.vocabulary_list == ('a', 'b') and done.hashing == 'legacy'
