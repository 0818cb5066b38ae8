"""Weights <= 0 in LinearModel and embedding combiners, against TF's numbers (issue 21).

TF's `test_sparse_combiner_with_negative_weights` (feature_column_v2_test.py) pins the linear model;
the embedding cases were computed with TF 2.15 by `tf_scripts/feature_columns_cases.py`
(`data/feature_columns_cases.json`). TF's safe embedding lookup prunes weights <= 0 only for the
'mean' and 'sqrtn' combiners; 'sum' keeps them.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jestimator.columns as fc

DATA = os.path.join(os.path.dirname(__file__), 'data', 'feature_columns_cases.json')
with open(DATA) as f:
  CASES = json.load(f)
KEY = jax.random.key(0)
TABLE = [[1., 2.], [3., 5.], [7., 11.]]


def _case(section: str, name: str) -> dict:
  return next(c for c in CASES[section] if c['name'] == name)


def _wire_cast_model(combiner: str):
  col = fc.weighted_categorical_column(fc.categorical_column_with_hash_bucket('wire_cast', 4),
                                       'weights')
  # TF's SparseTensor rows: [omar], [stringer, marlo] with weights [1], [1, -1]
  raw = {'wire_cast': [['omar'], ['stringer', 'marlo']], 'weights': [[1.], [1., -1.]]}
  x = fc.transform_features(raw, [col])
  model = fc.LinearModel([col], sparse_combiner=combiner)
  params = model.init(KEY, x)
  # Known weights as TF's test assigns them: the Flax path mirrors TF's variable
  # `linear_model/wire_cast_weighted_by_weights/weights`.
  params = {'params': {'wire_cast_weighted_by_weights': {
      'weights': jnp.array([[10.], [100.], [1000.], [10000.]])},
      'bias_weights': jnp.array([5.])}}
  return np.asarray(model.apply(params, x))


def test_linear_model_sum_keeps_negative_weights_tf_pinned():
  # feature_column_v2_test.py, LinearModelTest.test_sparse_combiner_with_negative_weights
  np.testing.assert_allclose(_wire_cast_model('sum'), [[1005.], [-9985.]])


@pytest.mark.parametrize('combiner', ['sum', 'mean', 'sqrtn'])
def test_linear_model_negative_weights_each_combiner_tf215(combiner):
  case = _case('linear_model', f'linear_negative_weights_{combiner}')
  assert case['variable'] == 'linear_model/wire_cast_weighted_by_weights/weights:0'
  np.testing.assert_allclose(_wire_cast_model(combiner), case['expected'], rtol=1e-6, atol=1e-6)


# The JSON's weighted rows as ragged lists: ids [2, 1] w [3, -1]; [0] w [0]; [1, 2, 0] w
# [.5, 2, -2]; an empty row.
IDS = [[2, 1], [0], [1, 2, 0], []]
WTS = [[3., -1.], [0.], [.5, 2., -2.], []]


def _embed(combiner: str, max_norm=None):
  col = fc.embedding_column(
      fc.weighted_categorical_column(fc.categorical_column_with_identity('ids', 3), 'w'), 2,
      combiner=combiner, max_norm=max_norm)
  x = fc.transform_features({'ids': IDS, 'w': WTS}, [col])
  layer = fc.DenseFeatures([col])
  params = {'params': {'ids_weighted_by_w_embedding': {'embedding_weights': jnp.array(TABLE)}}}
  assert jax.tree_util.tree_structure(layer.init(KEY, x)) == jax.tree_util.tree_structure(params)
  return np.asarray(layer.apply(params, x))


def test_embedding_sum_keeps_negative_weights():
  # ids [2, 1] with weights [3, -1]: 3 * (7, 11) - (3, 5) (TF 2.15; jestimator gave [21, 33])
  np.testing.assert_allclose(_embed('sum')[0], [18., 28.])


@pytest.mark.parametrize('combiner', ['sum', 'mean', 'sqrtn'])
@pytest.mark.parametrize('max_norm', [None, 4.0])
def test_weighted_embedding_combiners_tf215(combiner, max_norm):
  name = f'weighted_embedding_{combiner}' + ('' if max_norm is None else '_max_norm')
  case = _case('dense_features', name)
  assert case['table'] == TABLE and case.get('max_norm') == max_norm
  np.testing.assert_allclose(_embed(combiner, max_norm), case['expected'], rtol=1e-6, atol=1e-6)


def test_weighted_indicator_sums_negative_weights_tf215():
  col = fc.indicator_column(
      fc.weighted_categorical_column(fc.categorical_column_with_identity('ids', 3), 'w'))
  x = fc.transform_features({'ids': IDS, 'w': WTS}, [col])
  layer = fc.DenseFeatures([col])
  got = layer.apply(layer.init(KEY, x), x)
  np.testing.assert_allclose(got, _case('dense_features', 'weighted_indicator')['expected'])
