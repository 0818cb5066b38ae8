"""Vocabulary, identity, hash-bucket and weighted columns (host ids and multi-hot outputs)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jestimator.columns as fc
from jestimator.columns import keys

from . import _reference as ref


def ids(col, raw):
  return fc.transform_features(raw, [col])[keys.ids_key(col)]


def multi_hot(col, raw):
  cols = [fc.indicator_column(col)]
  x = fc.transform_features(raw, cols)
  return np.asarray(fc.DenseFeatures(cols).apply({}, x))


def test_vocabulary_list_oov_default_minus_one_drops_the_id():
  col = fc.categorical_column_with_vocabulary_list('g', ['a', 'b', 'c'])
  assert col.num_buckets == 3 and col.dtype == 'string'
  got = ids(col, {'g': np.array(['b', 'zz', 'a', '', 'c'])})
  assert got.dtype == np.int32 and got.shape == (5, 1)
  np.testing.assert_array_equal(got[:, 0], [1, -1, 0, -1, 2])
  # a dropped id gives an all-zero indicator row, as TF's safe lookup
  np.testing.assert_array_equal(multi_hot(col, {'g': ['zz', 'c']}), [[0, 0, 0], [0, 0, 1]])


def test_vocabulary_default_value_and_oov_buckets():
  col = fc.categorical_column_with_vocabulary_list('g', ['a', 'b'], default_value=0)
  np.testing.assert_array_equal(ids(col, {'g': ['b', 'nope']})[:, 0], [1, 0])
  words = [f'w{i}' for i in range(200)]
  for hashing, fingerprint in (('tf', ref.farmhash64), ('legacy', ref.fingerprint)):
    oov = fc.categorical_column_with_vocabulary_list('g', ['a', 'b'], num_oov_buckets=3,
                                                     hashing=hashing)
    assert oov.num_buckets == 5
    got = ids(oov, {'g': ['a', 'b'] + words})[:, 0]
    assert got[:2].tolist() == [0, 1]
    assert got[2:].tolist() == [2 + fingerprint(w) % 3 for w in words]
    assert set(got[2:].tolist()) == {2, 3, 4}
  with pytest.raises(ValueError, match='mutually exclusive'):
    fc.categorical_column_with_vocabulary_list('g', ['a'], default_value=0, num_oov_buckets=1)


def test_missing_values_bytes_objects_and_pandas():
  col = fc.categorical_column_with_vocabulary_list('g', ['a', 'b', 'é'])
  expect = [0, -1, 1, -1, 2, -1]
  for raw in (np.array(['a', '', 'b', 'x', 'é', '']),
              np.array([b'a', b'', b'b', b'x', 'é'.encode(), b'']),
              np.array(['a', None, 'b', 'x', 'é', np.nan], dtype=object),
              pd.Series(['a', None, 'b', 'x', 'é', None]),
              ['a', None, 'b', 'x', 'é', '']):
    np.testing.assert_array_equal(ids(col, {'g': raw})[:, 0], expect)


def test_integer_vocabulary():
  col = fc.categorical_column_with_vocabulary_list('n', [10, 20, 30], num_oov_buckets=1)
  assert col.dtype == 'int64'
  got = ids(col, {'n': np.array([30, 10, 99, -1])})[:, 0]
  np.testing.assert_array_equal(got, [2, 0, 3, -1])  # -1 is "missing", as TF's ignore value
  with pytest.raises(TypeError, match="feature 'n' holds strings"):
    ids(col, {'n': ['10']})


def test_multivalent_ragged_rows_pad_to_power_of_two():
  col = fc.categorical_column_with_vocabulary_list('t', ['a', 'b', 'c'])
  raw = {'t': [['a', 'b', 'c'], [], None, ['c', 'zz'], ['a', 'a', 'b', 'c', 'c']]}
  got = ids(col, raw)
  assert got.shape == (5, 8)  # longest row 5 -> width 8
  np.testing.assert_array_equal(got[:, :5], [[0, 1, 2, -1, -1], [-1] * 5, [-1] * 5,
                                             [2, -1, -1, -1, -1], [0, 0, 1, 2, 2]])
  assert (got[:, 5:] == -1).all()
  np.testing.assert_array_equal(multi_hot(col, raw),
                                [[1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 1], [2, 1, 2]])
  # a regular 2-D array is multivalent too
  two_d = ids(col, {'t': np.array([['a', 'c', ''], ['b', 'b', 'b']])})
  np.testing.assert_array_equal(two_d, [[0, 2, -1, -1], [1, 1, 1, -1]])


def test_vocabulary_file(tmp_path):
  path = tmp_path / 'vocab.txt'
  path.write_text('red\ngreen\nblue\n')
  col = fc.categorical_column_with_vocabulary_file('c', str(path))
  assert col.vocabulary_size == 3 and col.num_buckets == 3
  np.testing.assert_array_equal(ids(col, {'c': ['blue', 'red', 'pink']})[:, 0], [2, 0, -1])
  short = fc.categorical_column_with_vocabulary_file('c', str(path), vocabulary_size=2,
                                                     num_oov_buckets=2)
  got = ids(short, {'c': ['green', 'blue']})[:, 0]
  assert got[0] == 1 and got[1] == 2 + ref.farmhash64('blue') % 2
  nums = tmp_path / 'nums.txt'
  nums.write_text('7\n3\n')
  icol = fc.categorical_column_with_vocabulary_file('n', str(nums), dtype=np.int64)
  np.testing.assert_array_equal(ids(icol, {'n': [3, 7, 5]})[:, 0], [1, 0, -1])


def test_vocabulary_file_errors(tmp_path):
  with pytest.raises(ValueError, match=r"vocabulary_file '.*nope.txt' does not exist"):
    fc.categorical_column_with_vocabulary_file('c', str(tmp_path / 'nope.txt'))
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  with pytest.raises(ValueError, match=r"categorical_column_with_vocabulary_file 'c'.*is empty"):
    fc.categorical_column_with_vocabulary_file('c', str(empty))
  path = tmp_path / 'v.txt'
  path.write_text('a\nb\n')
  with pytest.raises(ValueError, match='has only 2 lines'):
    fc.categorical_column_with_vocabulary_file('c', str(path), vocabulary_size=3)
  col = fc.categorical_column_with_vocabulary_file('c', str(path))
  path.unlink()  # the host stage reads the file again: a clear error when it is gone
  with pytest.raises(ValueError, match='does not exist'):
    fc.host_stage([col])


def test_identity_semantics():
  col = fc.categorical_column_with_identity('d', 5)
  np.testing.assert_array_equal(ids(col, {'d': [0, 4, -3, -1]})[:, 0], [0, 4, -1, -1])
  with pytest.raises(ValueError, match=r"id 7 outside the range \[0, 5\).*no default_value"):
    ids(col, {'d': [1, 7]})
  dflt = fc.categorical_column_with_identity('d', 5, default_value=0)
  np.testing.assert_array_equal(ids(dflt, {'d': [3, 9, -3, -1]})[:, 0], [3, 0, 0, -1])
  np.testing.assert_array_equal(ids(col, {'d': np.array([1.0, np.nan])})[:, 0], [1, -1])
  with pytest.raises(TypeError, match='non-integral'):
    ids(col, {'d': [1.5]})


@pytest.mark.parametrize('hashing,fingerprint', [('tf', ref.farmhash64),
                                                  ('legacy', ref.fingerprint)])
def test_hash_bucket_ids_are_fingerprint_mod_size(hashing, fingerprint):
  col = fc.categorical_column_with_hash_bucket('h', 97, hashing=hashing)
  vals = ['Sales', 'Tech-support', 'x' * 50, '?']
  got = ids(col, {'h': vals + ['']})[:, 0]
  assert got.tolist() == [fingerprint(v) % 97 for v in vals] + [-1]
  icol = fc.categorical_column_with_hash_bucket('h', 97, dtype=np.int64, hashing=hashing)
  assert ids(icol, {'h': [42, 7, -1]})[:, 0].tolist() == [fingerprint('42') % 97,
                                                          fingerprint('7') % 97, -1]
  with pytest.raises(TypeError, match='expects strings'):
    ids(col, {'h': np.array([1, 2])})


def test_weighted_column_weights_align_with_ids():
  vocab = fc.categorical_column_with_vocabulary_list('t', ['a', 'b', 'c'])
  w = fc.weighted_categorical_column(vocab, 'tw')
  assert w.name == 't_weighted_by_tw' and w.num_buckets == 3
  raw = {'t': [['a', 'c', 'a'], [], ['zz', 'b']], 'tw': [[1.0, 2.0, 0.5], [], [3.0, 4.0]]}
  x = fc.transform_features(raw, [w])
  np.testing.assert_array_equal(x[keys.weights_key(w)], [[1, 2, .5, 0], [0] * 4, [3, 4, 0, 0]])
  # indicator of a weighted column sums the weights per bucket (OOV 'zz' is dropped)
  np.testing.assert_allclose(multi_hot(w, raw), [[1.5, 0, 2], [0, 0, 0], [0, 4, 0]])
  with pytest.raises(ValueError, match="weights 'tw' must have the same structure"):
    fc.transform_features({'t': [['a', 'b']], 'tw': [[1.0]]}, [w])


def test_names_and_buckets():
  v = fc.categorical_column_with_vocabulary_list('k', ['x', 'y'], num_oov_buckets=2)
  assert (v.name, v.num_buckets) == ('k', 4)
  assert fc.embedding_column(v, 3).name == 'k_embedding'
  assert fc.indicator_column(v).name == 'k_indicator'
  assert fc.categorical_column_with_identity('i', 9).num_buckets == 9
  assert fc.categorical_column_with_hash_bucket('h', 50).num_buckets == 50
  np.testing.assert_array_equal(multi_hot(v, {'k': ['y']}).shape, (1, 4))


def test_object_arrays_without_pandas():
  from jestimator.columns import _parse
  strs = fc.categorical_column_with_vocabulary_list('g', ['a', 'b'], num_oov_buckets=1)
  ints = fc.categorical_column_with_identity('i', 5)
  raw = {'g': np.array(['b', None, 'zz', np.nan, b'a'], dtype=object),
         'i': np.array([3, None, 1.0, np.nan, 4], dtype=object)}
  # The parsers take pandas as an argument (None: numpy only) and agree either way, also on a
  # str array long enough to be deduplicated with pandas.
  long = np.array(['x', '', 'y'] * 400)
  for parse, flat in ((_parse.flat_strings, raw['g']), (_parse.flat_strings, long),
                      (_parse.flat_ints, raw['i'])):
    with_pd, without = parse('k', flat, 'test', pd=pd), parse('k', flat, 'test', pd=None)
    for a, b in zip(with_pd, without):
      np.testing.assert_array_equal(a, b)
  ids = fc.host_stage([strs, ints])(raw)
  np.testing.assert_array_equal(ids[keys.ids_key(strs)][:, 0], [1, -1, 2, -1, 0])
  np.testing.assert_array_equal(ids[keys.ids_key(ints)][:, 0], [3, -1, 1, -1, 4])
