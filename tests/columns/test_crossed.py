"""crossed_column: ids against the reference hash, Cartesian products, names, errors."""
from __future__ import annotations

import pytest

import jestimator.columns as fc
from jestimator.columns import keys

from . import _reference as ref

TF_KEY = 0xDECAFCAFFE


def ids(col, raw):
  return fc.transform_features(raw, [col])[keys.ids_key(col)]


def test_string_cross_matches_reference():
  col = fc.crossed_column(['edu', 'occ'], 1000)
  assert col.name == 'edu_X_occ' and col.num_buckets == 1000
  edu, occ = ['Bachelors', 'HS-grad', 'Masters'], ['Sales', 'Sales', 'Exec']
  got = ids(col, {'edu': edu, 'occ': occ})[:, 0]
  want = [ref.cross(TF_KEY, [ref.fingerprint(e), ref.fingerprint(o)]) % 1000
          for e, o in zip(edu, occ)]
  assert got.tolist() == want
  keyed = fc.crossed_column(['edu', 'occ'], 1000, hash_key=123)
  assert ids(keyed, {'edu': edu[:1], 'occ': occ[:1]})[0, 0] == ref.cross(
      123, [ref.fingerprint(edu[0]), ref.fingerprint(occ[0])]) % 1000


def test_categorical_inputs_enter_by_id_and_ints_by_value():
  vocab = fc.categorical_column_with_vocabulary_list('edu', ['HS-grad', 'Bachelors'])
  age = fc.bucketized_column(fc.numeric_column('age'), [30, 50])
  col = fc.crossed_column([age, vocab, 'n'], 10_000)
  assert col.name == 'age_bucketized_X_edu_X_n'
  raw = {'age': [25.0, 60.0, 40.0], 'edu': ['Bachelors', 'HS-grad', 'PhD'], 'n': [7, 8, 9]}
  got = ids(col, raw)[:, 0]
  assert got[0] == ref.cross(TF_KEY, [0, 1, 7]) % 10_000
  assert got[1] == ref.cross(TF_KEY, [2, 0, 8]) % 10_000
  assert got[2] == -1  # 'PhD' is out of vocabulary: no id, so no cross


def test_multivalent_cross_is_the_cartesian_product():
  col = fc.crossed_column(['a', 'b'], 100_000)
  raw = {'a': [['x', 'y'], ['x'], []], 'b': [['p'], ['p', 'q'], ['p']]}
  got = ids(col, raw)
  assert got.shape == (3, 4)  # padded widths 2 x 2
  fp = {s: ref.fingerprint(s) for s in 'xypq'}
  want = lambda a, b: ref.cross(TF_KEY, [fp[a], fp[b]]) % 100_000
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
