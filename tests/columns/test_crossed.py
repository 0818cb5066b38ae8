"""crossed_column: ids against the reference hash, Cartesian products, names, errors."""
from __future__ import annotations

import numpy as np
import pytest

import jestimator.columns as fc
from jestimator.columns import keys

from . import _reference as ref

TF_KEY = 0xDECAFCAFFE
# (hashing, string fingerprint, cross fold) of each hashing mode, written independently
MODES = pytest.mark.parametrize('hashing,fingerprint,cross', [
    ('tf', ref.farmhash64, ref.tf_cross), ('legacy', ref.fingerprint, ref.cross)])


def ids(col, raw):
  return fc.transform_features(raw, [col])[keys.ids_key(col)]


@MODES
def test_string_cross_matches_reference(hashing, fingerprint, cross):
  col = fc.crossed_column(['edu', 'occ'], 1000, hashing=hashing)
  assert col.name == 'edu_X_occ' and col.num_buckets == 1000
  edu, occ = ['Bachelors', 'HS-grad', 'Masters'], ['Sales', 'Sales', 'Exec']
  got = ids(col, {'edu': edu, 'occ': occ})[:, 0]
  want = [cross(TF_KEY, [fingerprint(e), fingerprint(o)]) % 1000 for e, o in zip(edu, occ)]
  assert got.tolist() == want
  keyed = fc.crossed_column(['edu', 'occ'], 1000, hash_key=123, hashing=hashing)
  assert ids(keyed, {'edu': edu[:1], 'occ': occ[:1]})[0, 0] == cross(
      123, [fingerprint(edu[0]), fingerprint(occ[0])]) % 1000


@MODES
def test_categorical_inputs_enter_by_id_and_ints_by_value(hashing, fingerprint, cross):
  del fingerprint
  vocab = fc.categorical_column_with_vocabulary_list('edu', ['HS-grad', 'Bachelors'])
  age = fc.bucketized_column(fc.numeric_column('age'), [30, 50])
  col = fc.crossed_column([age, vocab, 'n'], 10_000, hashing=hashing)
  assert col.name == 'age_bucketized_X_edu_X_n'
  raw = {'age': [25.0, 60.0, 40.0], 'edu': ['Bachelors', 'HS-grad', 'PhD'], 'n': [7, 8, 9]}
  got = ids(col, raw)[:, 0]
  assert got[0] == cross(TF_KEY, [0, 1, 7]) % 10_000
  assert got[1] == cross(TF_KEY, [2, 0, 8]) % 10_000
  assert got[2] == -1  # 'PhD' is out of vocabulary: no id, so no cross


def test_tf_crosses_empty_strings_and_minus_one_as_values():
  # TF crosses raw features as they are: '' and -1 are values (legacy treated them as missing)
  tf_col = fc.crossed_column(['s', 'n'], 1000)
  legacy = fc.crossed_column(['s', 'n'], 1000, hashing='legacy')
  raw = {'s': np.array(['', 'a', 'b'], dtype=object), 'n': [5, -1, 6]}
  assert ids(tf_col, raw)[:, 0].tolist() == [
      ref.tf_cross(TF_KEY, [ref.farmhash64(s), n % 2 ** 64]) % 1000
      for s, n in zip(['', 'a', 'b'], [5, -1, 6])]
  assert ids(legacy, raw)[:, 0].tolist()[:2] == [-1, -1]
  # None (no value at all) crosses to nothing in both
  assert ids(tf_col, {'s': np.array([None, 'a'], dtype=object), 'n': [5, 5]})[0, 0] == -1


@MODES
def test_multivalent_cross_is_the_cartesian_product(hashing, fingerprint, cross):
  col = fc.crossed_column(['a', 'b'], 100_000, hashing=hashing)
  raw = {'a': [['x', 'y'], ['x'], []], 'b': [['p'], ['p', 'q'], ['p']]}
  got = ids(col, raw)
  assert got.shape == (3, 4)  # padded widths 2 x 2
  fp = {s: fingerprint(s) for s in 'xypq'}
  want = lambda a, b: cross(TF_KEY, [fp[a], fp[b]]) % 100_000
  valid = lambda row: sorted(v for v in row.tolist() if v >= 0)
  assert valid(got[0]) == sorted([want('x', 'p'), want('y', 'p')])
  assert valid(got[1]) == sorted([want('x', 'p'), want('x', 'q')])
  assert got[2].tolist() == [-1] * 4  # an empty input row crosses to nothing


def test_nested_crosses_flatten():
  inner = fc.crossed_column(['b', 'c'], 10)
  col = fc.crossed_column(['a', inner], 1000)
  assert col.keys == ('a', 'b', 'c') and col.name == 'a_X_b_X_c'


def test_cross_errors():
  hashed = fc.categorical_column_with_hash_bucket('occ', 100)
  with pytest.raises(ValueError, match=r"cannot cross the hashed column .*'occ'.*use its key"):
    fc.crossed_column([hashed, 'edu'], 100)
  with pytest.raises(ValueError, match='at least two'):
    fc.crossed_column(['a'], 10)
  with pytest.raises(TypeError, match='feature key .* or a categorical column'):
    fc.crossed_column(['a', fc.numeric_column('x')], 10)
