"""numeric_column and bucketized_column: host parsing and device outputs."""
from __future__ import annotations

import jax
import numpy as np
import pytest

import jestimator.columns as fc

KEY = jax.random.key(0)


def dense(cols, raw):
  x = fc.transform_features(raw, cols)
  m = fc.DenseFeatures(cols)
  return np.asarray(m.apply(m.init(KEY, x), x))


def test_numeric_shapes_and_dtype():
  col = fc.numeric_column('x', shape=(2, 2))
  assert col.name == 'x' and col.output_dim == 4
  out = fc.transform_features({'x': np.arange(8).reshape(2, 4)}, [col])
  assert out['x'].dtype == np.float32 and out['x'].shape == (2, 2, 2)
  np.testing.assert_array_equal(dense([col], {'x': np.arange(8).reshape(2, 2, 2)}),
                                np.arange(8).reshape(2, 4))
  # shape (1,) accepts [batch] and [batch, 1], ints, bools, lists
  one = fc.numeric_column('y')
  for raw in ([1, 2, 3], np.array([[1], [2], [3]]), np.array([1., 2., 3.]), [True, 2, 3]):
    got = fc.transform_features({'y': raw}, [one])['y']
    np.testing.assert_array_equal(got, [[1.], [2.], [3.]])
    assert got.dtype == np.float32


def test_numeric_default_value_fills_missing():
  col = fc.numeric_column('x', default_value=-1.0)
  out = fc.transform_features({'x': np.array([1.0, None, 3.0], dtype=object)}, [col])
  np.testing.assert_array_equal(out['x'][:, 0], [1.0, -1.0, 3.0])
  out = fc.transform_features({'x': np.array([np.nan, 2.0])}, [col])
  np.testing.assert_array_equal(out['x'][:, 0], [-1.0, 2.0])
  # absent feature: the default for every example (batch size from the other features)
  out = fc.transform_features({'y': np.zeros(3)}, [col, fc.numeric_column('y')])
  np.testing.assert_array_equal(out['x'][:, 0], [-1.0, -1.0, -1.0])
  vec = fc.numeric_column('v', shape=2, default_value=[5.0, 6.0])
  out = fc.transform_features({'v': np.array([[1.0, np.nan], [np.nan, 4.0]])}, [vec])
  np.testing.assert_array_equal(out['v'], [[1.0, 6.0], [5.0, 4.0]])


def test_missing_without_default_is_an_error():
  with pytest.raises(ValueError, match=r"feature 'x' has missing values \(None\) in examples \[1\]"):
    fc.transform_features({'x': np.array([1.0, None], dtype=object)}, [fc.numeric_column('x')])


def test_normalizers_apply_on_device():
  z = fc.NumericColumn('a', normalizer='zscore', mean=2.0, std=4.0)
  fn = fc.numeric_column('b', normalizer_fn=lambda x: x * 10)
  out = dense([z, fn], {'a': [2.0, 6.0, -2.0], 'b': [1.0, 2.0, 3.0]})
  np.testing.assert_allclose(out, [[0.0, 10.0], [1.0, 20.0], [-1.0, 30.0]])
  with pytest.raises(ValueError, match='normalizer_fn, not both'):
    fc.numeric_column('c', normalizer='zscore', normalizer_fn=abs)


def test_bucket_edges_follow_tf():
  # TF 2.15: boundaries [0, 1] -> -1:0, 0:1, 0.5:1, 1:2, 2:2
  col = fc.bucketized_column(fc.numeric_column('x'), [0, 1])
  assert col.name == 'x_bucketized' and col.num_buckets == 3
  out = dense([col], {'x': [-1.0, 0.0, 0.5, 1.0, 2.0]})
  np.testing.assert_array_equal(out, np.eye(3)[[0, 1, 1, 2, 2]])


def test_bucketized_multidimensional_source():
  col = fc.bucketized_column(fc.numeric_column('x', shape=2), [0.0])
  assert col.num_buckets == 4 and col.output_dim == 4
  out = dense([col], {'x': [[-1.0, 1.0], [1.0, -1.0]]})
  np.testing.assert_array_equal(out, [[1, 0, 0, 1], [0, 1, 1, 0]])
  # as a categorical column element j lands in j * 2 + bucket: indicator shows it
  ind = dense([fc.indicator_column(col)], {'x': [[-1.0, 1.0], [1.0, -1.0]]})
  np.testing.assert_array_equal(ind, [[1, 0, 0, 1], [0, 1, 1, 0]])


def test_bucketized_uses_normalized_values_and_float32_on_both_stages():
  src = fc.NumericColumn('x', normalizer='zscore', mean=10.0, std=2.0)
  col = fc.bucketized_column(src, [0.0, 1.0])
  out = dense([col], {'x': [9.0, 10.0, 12.0]})
  np.testing.assert_array_equal(out.argmax(1), [0, 1, 2])
  # a boundary that is not a float32 value: host (crossed) and device agree on every value
  b = fc.bucketized_column(fc.numeric_column('v'), [0.1])
  vals = np.array([np.nextafter(np.float32(0.1), np.float32(0)), np.float32(0.1),
                   np.nextafter(np.float32(0.1), np.float32(1))], np.float32)
  device = dense([b], {'v': vals}).argmax(1)
  assert device.tolist() == [0, 1, 1]
  # the host buckets the same way for crosses: equal cross ids <=> equal buckets (same 'k')
  cross = fc.crossed_column([b, 'k'], 1_000_000)
  ids = list(fc.transform_features({'v': vals, 'k': ['a'] * 3}, [cross]).values())[0][:, 0]
  assert ids[0] != ids[1] and ids[1] == ids[2]


def test_bucketized_errors():
  src = fc.numeric_column('x')
  with pytest.raises(ValueError, match='strictly increasing'):
    fc.bucketized_column(src, [1, 0])
  with pytest.raises(ValueError, match='strictly increasing'):
    fc.bucketized_column(src, [0, 0])
  with pytest.raises(TypeError, match='must be a numeric_column'):
    fc.bucketized_column(fc.categorical_column_with_identity('x', 3), [0])
  with pytest.raises(ValueError, match='num_buckets must be >= 2'):
    fc.bucketized_column(src, 'quantiles', num_buckets=1)
  q = fc.bucketized_column(src, 'quantiles', num_buckets=4)
  with pytest.raises(ValueError, match=r'run jestimator.columns.analyze'):
    fc.transform_features({'x': [1.0]}, [q])
