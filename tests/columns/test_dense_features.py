"""DenseFeatures / input_layer: ordering, embeddings, combiners, shared tables, errors."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jestimator.columns as fc

KEY = jax.random.key(0)


def test_outputs_concatenate_in_name_order():
  # TF 2.15: input order (zeta, alpha[2], mid) came out as (alpha, mid, zeta)
  cols = [fc.numeric_column('zeta'), fc.numeric_column('alpha', shape=2), fc.numeric_column('mid')]
  raw = {'zeta': [1.0, 2.0], 'alpha': [[3.0, 4.0], [5.0, 6.0]], 'mid': [7.0, 8.0]}
  x = fc.transform_features(raw, cols)
  out = fc.DenseFeatures(cols).apply({}, x)
  np.testing.assert_array_equal(out, [[3, 4, 7, 1], [5, 6, 8, 2]])
  # plain numeric dicts are valid input too (no host stage needed for numeric columns)
  np.testing.assert_array_equal(fc.DenseFeatures(cols).apply({}, raw), out)


def _numpy_combine(table, rows, weights, combiner):
  out = np.zeros((len(rows), table.shape[1]))
  for i, (r, w) in enumerate(zip(rows, weights)):
    # TF 2.15's safe lookup prunes weights <= 0 for mean and sqrtn only
    pairs = [(t, wt) for t, wt in zip(r, w) if t >= 0 and (wt > 0 or combiner == 'sum')]
    if not pairs:
      continue
    s = sum(wt * table[t] for t, wt in pairs)
    den = {'sum': 1.0, 'mean': sum(wt for _, wt in pairs),
           'sqrtn': np.sqrt(sum(wt * wt for _, wt in pairs))}[combiner]
    out[i] = s / den
  return out


@pytest.mark.parametrize('combiner', ['sum', 'mean', 'sqrtn'])
def test_embedding_combiners_over_ragged_and_empty_rows(combiner):
  vocab = ['a', 'b', 'c', 'd']
  cat = fc.categorical_column_with_vocabulary_list('t', vocab)
  wcat = fc.weighted_categorical_column(cat, 'w')
  cols = [fc.embedding_column(cat, 3, combiner=combiner),
          fc.embedding_column(wcat, 3, combiner=combiner)]
  raw = {'t': [['a', 'b', 'b'], [], ['zz'], ['d'], None],
         'w': [[1.0, 2.0, 0.5], [], [3.0], [-1.0], None]}
  x = fc.transform_features(raw, cols)
  m = fc.DenseFeatures(cols)
  params = m.init(KEY, x)
  table_plain = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
  table_w = table_plain[::-1].copy()
  params = {'params': {'t_embedding': {'embedding_weights': jnp.asarray(table_plain)},
                       't_weighted_by_w_embedding': {'embedding_weights': jnp.asarray(table_w)}}}
  out = np.asarray(m.apply(params, x))
  id_rows = [[0, 1, 1], [], [-1], [3], []]
  plain = _numpy_combine(table_plain, id_rows, [[1] * len(r) for r in id_rows], combiner)
  weighted = _numpy_combine(table_w, id_rows, [[1.0, 2.0, 0.5], [], [3.0], [-1.0], []], combiner)
  # name order: t_embedding < t_weighted_by_w_embedding
  np.testing.assert_allclose(out, np.concatenate([plain, weighted], axis=1), rtol=1e-6)
  assert not out[1].any() and not out[4].any()  # empty rows give zeros
  if combiner == 'sum':  # weight -1 counts for 'sum' (as TF's); mean/sqrtn drop it
    np.testing.assert_allclose(out[3, 3:], -table_w[3], rtol=1e-6)
  else:
    assert not out[3, 3:].any()


def test_max_norm_clips_each_embedding():
  cat = fc.categorical_column_with_identity('i', 2)
  col = fc.embedding_column(cat, 2, combiner='sum', max_norm=1.0)
  x = fc.transform_features({'i': [[0, 1]]}, [col])
  table = jnp.array([[3.0, 4.0], [0.3, 0.4]])
  out = fc.DenseFeatures([col]).apply({'params': {'i_embedding': {'embedding_weights': table}}},
                                      x)
  np.testing.assert_allclose(out, [[0.6 + 0.3, 0.8 + 0.4]], rtol=1e-6)


def test_shared_embeddings_share_one_table():
  q = fc.categorical_column_with_vocabulary_list('query', ['a', 'b', 'c'])
  d = fc.categorical_column_with_vocabulary_list('doc', ['a', 'b', 'c'])
  cols = fc.shared_embeddings([q, d], dimension=4)
  assert [c.name for c in cols] == ['query_shared_embedding', 'doc_shared_embedding']
  assert cols[0].shared_embedding_collection_name == 'doc_query_shared_embedding'
  x = fc.transform_features({'query': ['b', 'c'], 'doc': ['b', 'a']}, cols)
  params = fc.DenseFeatures(cols).init(KEY, x)
  assert list(params['params']) == ['doc_query_shared_embedding']
  table = np.asarray(params['params']['doc_query_shared_embedding']['embedding_weights'])
  assert table.shape == (3, 4)
  out = np.asarray(fc.DenseFeatures(cols).apply(params, x))
  # doc_shared_embedding sorts first: [doc, query]
  np.testing.assert_allclose(out[:, :4], table[[1, 0]], rtol=1e-6)
  np.testing.assert_allclose(out[:, 4:], table[[1, 2]], rtol=1e-6)
  # gradients of both columns land in the one table
  g = jax.grad(lambda p: fc.DenseFeatures(cols).apply(p, x).sum())(params)
  grad = np.asarray(g['params']['doc_query_shared_embedding']['embedding_weights'])
  np.testing.assert_allclose(grad[:, 0], [1.0, 2.0, 1.0])
  with pytest.raises(ValueError, match='same number of buckets'):
    fc.shared_embeddings([q, fc.categorical_column_with_vocabulary_list('z', ['a', 'b'])], 4)
  with pytest.raises(ValueError, match='must have the same type'):  # as TF, even with 3 ids
    fc.shared_embeddings([q, fc.categorical_column_with_identity('z', 3)], 4)


def test_default_initializer_is_tf_truncated_normal():
  col = fc.embedding_column(fc.categorical_column_with_identity('i', 4000), 16)
  x = fc.transform_features({'i': [1]}, [col])
  t = np.asarray(fc.DenseFeatures([col]).init(KEY, x)['params']['i_embedding'][
      'embedding_weights'])
  stddev = 1 / np.sqrt(16)
  assert np.abs(t).max() <= 2 * stddev + 1e-6
  # a normal truncated at +-2 sigma has std 0.8796 sigma
  assert abs(t.std() / stddev - 0.8796) < 0.02
  custom = fc.embedding_column(fc.categorical_column_with_identity('i', 5), 2,
                               initializer=nn.initializers.ones)
  p = fc.DenseFeatures([custom]).init(KEY, fc.transform_features({'i': [1]}, [custom]))
  np.testing.assert_array_equal(p['params']['i_embedding']['embedding_weights'], np.ones((5, 2)))


def test_trainable_false_stops_the_gradient():
  cat = fc.categorical_column_with_identity('i', 3)
  cols = [fc.embedding_column(cat, 2, trainable=False)]
  x = fc.transform_features({'i': [0, 2]}, cols)
  params = fc.DenseFeatures(cols).init(KEY, x)
  g = jax.grad(lambda p: fc.DenseFeatures(cols).apply(p, x).sum())(params)
  assert not np.asarray(g['params']['i_embedding']['embedding_weights']).any()


def test_indicator_and_jit():
  cat = fc.categorical_column_with_vocabulary_list('c', ['x', 'y', 'z'])
  cols = [fc.indicator_column(cat), fc.numeric_column('n')]
  x = fc.transform_features({'c': [['x', 'x', 'z'], ['y']], 'n': [1.0, 2.0]}, cols)
  out = jax.jit(fc.DenseFeatures(cols).apply)({}, x)
  np.testing.assert_array_equal(out, [[2, 0, 1, 1], [0, 1, 0, 2]])
  got = {}
  fc.DenseFeatures(cols).apply({}, x, cols_to_output_tensors=got)
  np.testing.assert_array_equal(got[cols[1]], [[1.0], [2.0]])


def test_rejects_columns_it_cannot_take():
  cat = fc.categorical_column_with_hash_bucket('occupation', 10)
  x = fc.transform_features({'occupation': ['a']}, [cat])
  with pytest.raises(TypeError, match=r"'occupation' is categorical.*embedding_column\(<occupation>"
                                      r".*or indicator_column\(<occupation>\)"):
    fc.DenseFeatures([cat]).init(KEY, x)
  seq = fc.sequence_numeric_column('s')
  with pytest.raises(TypeError, match='sequence column; use SequenceFeatures'):
    fc.DenseFeatures([seq]).init(KEY, {'s': np.zeros((1, 2))})
  with pytest.raises(ValueError, match="duplicate feature column name 'a'"):
    fc.DenseFeatures([fc.numeric_column('a'), fc.numeric_column('a', shape=2)]).init(KEY, {})
  with pytest.raises(ValueError, match=r"needs feature 'occupation@.*/ids'.*transform_features"):
    fc.DenseFeatures([fc.indicator_column(cat)]).init(KEY, {'occupation': np.array([1])})


def test_input_layer_inside_and_outside_a_module():
  cat = fc.categorical_column_with_identity('i', 5)
  cols = [fc.embedding_column(cat, 3), fc.numeric_column('n')]
  x = fc.transform_features({'i': [1, 4], 'n': [0.5, 1.5]}, cols)

  class Model(nn.Module):
    @nn.compact
    def __call__(self, features):
      return nn.Dense(1)(fc.input_layer(features, cols))

  params = Model().init(KEY, x)
  assert params['params']['DenseFeatures_0']['i_embedding']['embedding_weights'].shape == (5, 3)
  assert Model().apply(params, x).shape == (2, 1)
  free = fc.input_layer(x, [fc.indicator_column(cat), fc.numeric_column('n')])
  np.testing.assert_array_equal(free, [[0, 1, 0, 0, 0, 0.5], [0, 0, 0, 0, 1, 1.5]])
  with pytest.raises(ValueError, match='outside a Flax module use DenseFeatures'):
    fc.input_layer(x, cols)


def test_single_id_combiners_match_the_general_formula():
  """Width-1 rows take an elementwise path; it must equal the padded (width-2) computation."""
  from jestimator.columns import _device
  rows = jnp.asarray(np.random.default_rng(0).normal(size=(4, 1, 3)), jnp.float32)
  w = jnp.asarray([[2.0], [0.0], [0.5], [-1.5]], jnp.float32)
  padded_rows = jnp.concatenate([rows, jnp.ones_like(rows)], axis=1)
  padded_w = jnp.concatenate([w, jnp.zeros_like(w)], axis=1)
  for combiner in ('sum', 'mean', 'sqrtn'):
    np.testing.assert_allclose(_device.combine(rows, w, combiner),
                               _device.combine(padded_rows, padded_w, combiner), atol=1e-6,
                               err_msg=combiner)
