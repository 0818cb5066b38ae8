"""Sparse inputs (TF's SparseTensor parts) in the host stage, against TF 2.15 (issue 21).

Expected values: `data/feature_columns_cases.json` (`tf_scripts/feature_columns_cases.py`), except
`test_sequence_embedding_tf_pinned`, whose numbers are TF's own
(`sequence_feature_column_test.py`, `SequenceFeaturesTest.test_embedding_column`). A sparse value
holds only real values: -1 and '' are values (TF maps an identity -1 to `default_value`, hashes '');
positions are kept (gaps in a sequence give zero steps; rank-3 inputs hold several ids per step).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jestimator.columns as fc
from jestimator import io as jio
from tests.tf_parity import _feature_columns as cases

TABLE = [[1., 2.], [3., 5.], [7., 11.]]


def test_identity_minus_one_is_a_value_mapped_to_default():
  # a dense -1 means "no value"; in a sparse input it is a value, out of range -> default_value
  col = fc.indicator_column(fc.categorical_column_with_identity('i', 4, default_value=3))
  got = cases.dense_features_case('identity_sparse_minus_one_default', [col])
  np.testing.assert_array_equal(got, [[0, 0, 0, 1], [0, 0, 1, 1]])
  dense = fc.transform_features({'i': [[-1, -1], [2, 5]]}, [col])
  layer = fc.DenseFeatures([col])
  np.testing.assert_array_equal(layer.apply({}, dense), [[0, 0, 0, 0], [0, 0, 1, 1]])


def test_identity_minus_one_without_default_is_dropped():
  cases.dense_features_case('identity_sparse_minus_one_no_default',
                            [fc.indicator_column(fc.categorical_column_with_identity('i', 4))])


def test_empty_string_is_a_hashed_value():
  col = fc.indicator_column(fc.categorical_column_with_hash_bucket('s', 5))
  cases.dense_features_case('hash_sparse_empty_string', [col])
  cases.dense_features_case('hash_dense_empty_string', [col])  # dense '' is "no value"


def test_embedding_sparse_input_with_gaps_tf_pinned():
  # feature_column_v2_test.py EmbeddingColumnTest: ids [2], [0, 1], [], [1] at indices
  # (0, 0), (1, 0), (1, 4), (3, 0), dense_shape (4, 5); mean combiner
  col = fc.embedding_column(fc.categorical_column_with_identity('ids', 3), 2)
  got = cases.dense_features_case('embedding_sparse_gaps_mean', [col], TABLE)
  np.testing.assert_allclose(got, [[7., 11.], [2., 3.5], [0., 0.], [3., 5.]])


def test_multivalent_cross_of_sparse_inputs():
  col = fc.indicator_column(fc.crossed_column(['a', 'b'], 10))
  cases.dense_features_case('crossed_multivalent', [col])


@pytest.mark.parametrize('combiner', ['sum', 'mean', 'sqrtn'])
def test_weighted_embedding_of_sparse_ids_and_weights(combiner):
  col = fc.embedding_column(
      fc.weighted_categorical_column(fc.categorical_column_with_identity('ids', 3), 'w'), 2,
      combiner=combiner)
  cases.dense_features_case(f'weighted_embedding_{combiner}', [col], TABLE)


def test_weighted_indicator_of_sparse_inputs():
  col = fc.indicator_column(
      fc.weighted_categorical_column(fc.categorical_column_with_identity('ids', 3), 'w'))
  cases.dense_features_case('weighted_indicator', [col])


@pytest.mark.parametrize('combiner', ['sum', 'mean', 'sqrtn'])
def test_linear_model_sparse_inputs(combiner):
  c = cases.case('linear_model', f'linear_negative_weights_{combiner}')
  col = fc.weighted_categorical_column(fc.categorical_column_with_hash_bucket('wire_cast', 4),
                                       'weights')
  x = fc.transform_features(cases.raw_features(c), [col])
  model = fc.LinearModel([col], sparse_combiner=combiner)
  params = {'params': {'wire_cast_weighted_by_weights': {'weights': jnp.asarray(c['weights'])},
                       'bias_weights': jnp.asarray(c['bias'])}}
  np.testing.assert_allclose(model.apply(params, x), c['expected'], rtol=1e-6, atol=1e-6)


def _sequence(c: dict, col) -> tuple[np.ndarray, np.ndarray]:
  x = fc.transform_features(cases.raw_features(c), [col])
  layer = fc.SequenceFeatures([col])
  params = layer.init(cases.KEY, x)
  if 'table' in c:
    params = cases.with_table(params, c['table'])
  seq, length = layer.apply(params, x)
  return np.asarray(seq), np.asarray(length)


SEQUENCE_CASES = [c['name'] for c in cases.CASES['sequence_features']]


@pytest.mark.parametrize('name', SEQUENCE_CASES)
def test_sequence_columns_of_rank2_and_rank3_sparse_inputs(name):
  c = cases.case('sequence_features', name)
  cat = fc.sequence_categorical_column_with_identity('s', 3)
  col = (fc.indicator_column(cat) if c['kind'] == 'indicator' else
         fc.embedding_column(cat, 2, combiner=c['combiner']))
  seq, length = _sequence(c, col)
  want = np.asarray(c['expected'])
  t = want.shape[1]
  np.testing.assert_allclose(seq[:, :t], want, rtol=1e-6, atol=1e-6)
  assert not seq[:, t:].any()  # jestimator pads T to a power of two with zero steps
  np.testing.assert_array_equal(length, c['expected_length'])


@pytest.mark.parametrize('rank', [2, 3])
def test_sequence_embedding_tf_pinned(rank):
  # sequence_feature_column_test.py, SequenceFeaturesTest.test_embedding_column ('2D' and '3D')
  if rank == 2:
    a = jio.SparseTensorValue(np.array([[0, 0], [1, 0], [1, 1]]), np.array([2, 0, 1]),
                              np.array([2, 2]))
    b = jio.SparseTensorValue(np.array([[0, 0], [1, 0], [1, 1]]), np.array([1, 2, 0]),
                              np.array([2, 2]))
    want = [[[5., 6., 14., 15., 16.], [0., 0., 0., 0., 0.]],
            [[1., 2., 17., 18., 19.], [3., 4., 11., 12., 13.]]]
    want_length = [1, 2]
  else:
    a = jio.SparseTensorValue(
        np.array([[0, 0, 0], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0]]),
        np.array([2, 0, 1, 0, 0, 1]), np.array([2, 2, 2]))
    b = jio.SparseTensorValue(np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0]]),
                              np.array([1, 1, 1, 2, 0]), np.array([2, 2, 2]))
    want = [[[5., 6., 14., 15., 16.], [2., 3., 14., 15., 16.]],
            [[1., 2., 17., 18., 19.], [3., 4., 11., 12., 13.]]]
    want_length = [2, 2]
  def tf_initializer(values):  # as TF's test writes it: TF's calling convention
    def _initializer(shape, dtype, partition_info=None):
      assert tuple(shape) == np.shape(values) and dtype == np.float32 and partition_info is None
      return values
    return _initializer

  col_a = fc.embedding_column(fc.sequence_categorical_column_with_identity('aaa', 3), 2,
                              initializer=tf_initializer(((1., 2.), (3., 4.), (5., 6.))))
  col_b = fc.embedding_column(
      fc.sequence_categorical_column_with_identity('bbb', 3), 3,
      initializer=tf_initializer(((11., 12., 13.), (14., 15., 16.), (17., 18., 19.))))
  x = fc.transform_features({'aaa': a, 'bbb': b}, [col_b, col_a])
  layer = fc.SequenceFeatures([col_b, col_a])
  seq, length = layer.apply(layer.init(cases.KEY, x), x)
  np.testing.assert_allclose(seq, want)
  np.testing.assert_array_equal(length, want_length)


def test_varlen_parsing_feeds_columns_through_to_sparse():
  ragged = np.empty(3, dtype=object)
  ragged[:] = [np.array([b'a', b'']), np.array([], dtype=object), np.array([b'b'])]
  sp = jio.to_sparse(ragged)
  assert isinstance(sp, jio.SparseTensorValue)
  col = fc.indicator_column(fc.categorical_column_with_vocabulary_list('t', ['a', 'b', '?'],
                                                                       num_oov_buckets=1))
  x = fc.transform_features({'t': sp}, [col])
  out = np.asarray(fc.DenseFeatures([col]).apply({}, x))
  # '' is a value in a sparse input: an out-of-vocabulary bucket, unlike the ragged form
  assert out[:, :3].tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]] and out[0, 3] == 1
  ragged_out = np.asarray(fc.DenseFeatures([col]).apply({}, fc.transform_features(
      {'t': ragged}, [col])))
  assert ragged_out[0].tolist() == [1, 0, 0, 0]


def test_sparse_sequence_numeric_column():
  # TF's sequence_numeric_column reads [batch, T] sparse values; gaps take default_value
  col = fc.sequence_numeric_column('v', default_value=-1.0)
  sp = jio.SparseTensorValue(np.array([[0, 0], [0, 2], [1, 0]]), np.array([1.5, 2.5, 3.5]),
                             np.array([2, 3]))
  seq, length = fc.SequenceFeatures([col]).apply({}, fc.transform_features({'v': sp}, [col]))
  np.testing.assert_allclose(np.asarray(seq)[:, :3, 0], [[1.5, -1.0, 2.5], [3.5, -1.0, -1.0]])
  np.testing.assert_array_equal(length, [3, 1])


def test_sparse_input_refusals():
  rank3 = jio.SparseTensorValue(np.array([[0, 0, 0]]), np.array([1]), np.array([1, 1, 1]))
  emb = fc.embedding_column(fc.categorical_column_with_identity('i', 3), 2)
  with pytest.raises(ValueError, match="rank-3 sparse input.*only sequence columns"):
    fc.transform_features({'i': rank3}, [emb])
  with pytest.raises(ValueError, match='numeric column takes dense values'):
    fc.transform_features({'i': rank3}, [fc.numeric_column('i')])
  bad = jio.SparseTensorValue(np.array([[0, 5]]), np.array([1]), np.array([1, 2]))
  with pytest.raises(ValueError, match=r'outside dense_shape \(1, 2\)'):
    fc.transform_features({'i': bad}, [emb])
  w = fc.weighted_categorical_column(fc.categorical_column_with_identity('i', 3), 'w')
  ids = jio.SparseTensorValue(np.array([[0, 0], [0, 1]]), np.array([1, 2]), np.array([1, 2]))
  wts = jio.SparseTensorValue(np.array([[0, 0]]), np.array([1.0]), np.array([1, 2]))
  with pytest.raises(ValueError, match='must have the same indices'):
    fc.transform_features({'i': ids, 'w': wts}, [w])


class _KerasStyleConstant:
  """The shape of TF 2's initializer classes: `__call__(self, shape, dtype=None, **kwargs)`."""

  def __init__(self, value):
    self.value = np.asarray(value, np.float32)

  def __call__(self, shape, dtype=None, **kwargs):
    return np.broadcast_to(self.value, shape)


def test_tf_and_flax_initializers_both_accepted():
  cat = fc.categorical_column_with_identity('ids', 3)
  x = fc.transform_features({'ids': [[2], [0]]}, [cat])
  flax_style = lambda key, shape, dtype: jnp.asarray(TABLE, dtype)  # noqa: E731
  for init in (flax_style, _KerasStyleConstant(TABLE), _KerasStyleConstant(2.5)):
    col = fc.embedding_column(cat, 2, initializer=init)
    layer = fc.DenseFeatures([col])
    params = layer.init(cases.KEY, x)
    want = np.broadcast_to(np.asarray(init.value if hasattr(init, 'value') else TABLE), (3, 2))
    np.testing.assert_allclose(params['params']['ids_embedding']['embedding_weights'], want)
    np.testing.assert_allclose(layer.apply(params, x), want[[2, 0]])


@pytest.mark.parametrize('combiner,want', [('mean', [[1005.], [5010.]]),
                                           ('sqrtn', [[1005.], [7083.139]])])
def test_linear_model_sparse_combiner_tf_pinned(combiner, want):
  # feature_column_v2_test.py / tensorflow_estimator linear_model_test.py test_sparse_combiner and
  # test_sparse_combiner_sqrtn: 'omar', 'stringer', 'marlo' hash to 2, 0, 3 (TF's comment)
  col = fc.categorical_column_with_hash_bucket('wire_cast', 4)
  wire = jio.SparseTensorValue(np.array([[0, 0], [1, 0], [1, 1]]),
                               np.array(['omar', 'stringer', 'marlo']), np.array([2, 2]))
  x = fc.transform_features({'wire_cast': wire}, [col])
  np.testing.assert_array_equal(x[fc.keys.ids_key(col)][:, :2], [[2, -1], [0, 3]])
  params = {'params': {'wire_cast': {'weights': jnp.array([[10.], [100.], [1000.], [10000.]])},
                       'bias_weights': jnp.array([5.])}}
  got = fc.LinearModel([col], sparse_combiner=combiner).apply(params, x)
  np.testing.assert_allclose(got, want, rtol=1e-6)
