"""LinearModel: logits against numpy, sparse combiners, parameter names, no dense one-hot."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jestimator.columns as fc

KEY = jax.random.key(0)


def _set_random(params, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda p: jnp.asarray(rng.normal(size=p.shape).astype(np.float32)), params)


def test_logits_match_numpy():
  age = fc.numeric_column('age')
  buckets = fc.bucketized_column(fc.numeric_column('hours'), [20.0, 40.0])
  edu = fc.categorical_column_with_vocabulary_list('edu', ['hs', 'ba', 'ma'])
  terms = fc.weighted_categorical_column(
      fc.categorical_column_with_identity('t', 4), 'tw')
  cross = fc.crossed_column(['edu', 'occ'], 50)
  cols = [terms, cross, edu, buckets, age]
  raw = {'age': [30.0, 50.0, 20.0], 'hours': [10.0, 40.0, 60.0], 'edu': ['ba', 'phd', 'ma'],
         'occ': ['x', 'y', 'x'], 't': [[0, 3], [], [2]], 'tw': [[0.5, 2.0], [], [1.5]]}
  x = fc.transform_features(raw, cols)
  model = fc.LinearModel(cols, units=2)
  params = model.init(KEY, x)
  p = params['params']
  assert set(p) == {'age', 'hours_bucketized', 'edu', 'edu_X_occ', 't_weighted_by_tw',
                    'bias_weights'}
  assert p['hours_bucketized']['weights'].shape == (3, 2)
  assert p['edu_X_occ']['weights'].shape == (50, 2)
  assert not np.asarray(model.apply(params, x)).any()  # TF initialises linear weights to zero
  params = _set_random(params)
  w = {k: np.asarray(v['weights']) if k != 'bias_weights' else np.asarray(v)
       for k, v in params['params'].items()}
  cross_ids = x[fc.keys.ids_key(cross)][:, 0]
  want = np.stack([
      w['age'][0] * 30 + w['hours_bucketized'][0] + w['edu'][1] + w['edu_X_occ'][cross_ids[0]] +
      0.5 * w['t_weighted_by_tw'][0] + 2.0 * w['t_weighted_by_tw'][3],
      # 'phd' is out of vocabulary: no 'edu' id; the cross reads the raw strings, so it has one
      w['age'][0] * 50 + w['hours_bucketized'][2] + w['edu_X_occ'][cross_ids[1]],
      w['age'][0] * 20 + w['hours_bucketized'][2] + w['edu'][2] + w['edu_X_occ'][cross_ids[2]] +
      1.5 * w['t_weighted_by_tw'][2],
  ]) + w['bias_weights']
  np.testing.assert_allclose(model.apply(params, x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('combiner,norm', [('sum', lambda w: 1.0), ('mean', np.sum),
                                           ('sqrtn', lambda w: np.sqrt(np.sum(np.square(w))))])
def test_sparse_combiner(combiner, norm):
  col = fc.weighted_categorical_column(fc.categorical_column_with_identity('i', 5), 'w')
  raw = {'i': [[1, 2, 2], [4]], 'w': [[1.0, 2.0, 3.0], [0.5]]}
  x = fc.transform_features(raw, [col])
  model = fc.LinearModel([col], sparse_combiner=combiner)
  params = _set_random(model.init(KEY, x), seed=3)
  table = np.asarray(params['params']['i_weighted_by_w']['weights'])[:, 0]
  bias = float(params['params']['bias_weights'][0])
  row0 = (table[1] * 1 + table[2] * 2 + table[2] * 3) / norm(np.array([1.0, 2.0, 3.0]))
  row1 = table[4] * 0.5 / norm(np.array([0.5]))
  np.testing.assert_allclose(model.apply(params, x)[:, 0], [row0 + bias, row1 + bias], rtol=1e-5)


def test_million_bucket_cross_needs_no_dense_one_hot():
  cross = fc.crossed_column(['a', 'b'], 1_000_000)
  batch = 64
  raw = {'a': [f'a{i}' for i in range(batch)], 'b': [f'b{i % 7}' for i in range(batch)]}
  x = fc.transform_features(raw, [cross])
  model = fc.LinearModel([cross])
  params = model.init(KEY, x)
  loss = lambda p: jnp.sum(model.apply(p, x) ** 2)
  jaxpr = jax.make_jaxpr(jax.value_and_grad(loss))(params)
  biggest = max(int(np.prod(v.aval.shape)) for e in jaxpr.jaxpr.eqns for v in e.outvars)
  assert biggest <= 1_000_000  # the weight (and its gradient); a one-hot would be 64e6
  assert model.apply(params, x).shape == (batch, 1)


def test_embedding_and_indicator_columns_are_dense_inputs():
  cat = fc.categorical_column_with_identity('i', 4)
  emb = fc.embedding_column(cat, 3)
  ind = fc.indicator_column(fc.categorical_column_with_identity('j', 2))
  x = fc.transform_features({'i': [1, 3], 'j': [0, 1]}, [emb, ind])
  model = fc.LinearModel([emb, ind])
  params = _set_random(model.init(KEY, x), seed=1)
  p = params['params']
  assert set(p['i_embedding']) == {'embedding_weights', 'weights'}  # one scope, as TF
  table, we = np.asarray(p['i_embedding']['embedding_weights']), np.asarray(
      p['i_embedding']['weights'])
  wi = np.asarray(p['j_indicator']['weights'])
  want = table[[1, 3]] @ we + np.eye(2)[[0, 1]] @ wi + np.asarray(p['bias_weights'])
  np.testing.assert_allclose(model.apply(params, x), want, rtol=1e-5)


def test_errors():
  x = {'s': np.zeros((1, 2), np.float32), 's/length': np.array([2], np.int32)}
  with pytest.raises(TypeError, match='sequence column'):
    fc.LinearModel([fc.sequence_numeric_column('s')]).init(KEY, x)
  with pytest.raises(ValueError, match='sparse_combiner must be one of'):
    fc.LinearModel([fc.numeric_column('a')], sparse_combiner='max').init(KEY, {'a': np.ones(1)})
