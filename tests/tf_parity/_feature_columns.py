"""Shared helpers of the feature-column parity tests: the TF 2.15 cases and their inputs.

`data/feature_columns_cases.json` is written by `tf_scripts/feature_columns_cases.py`; an input
stored as `{"sparse": {indices, values, dense_shape}}` is fed to jestimator as the
`jestimator.io.SparseTensorValue` TF was fed, anything else as the same dense list.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import jestimator.columns as fc
from jestimator import io as jio

DATA = os.path.join(os.path.dirname(__file__), 'data', 'feature_columns_cases.json')
with open(DATA) as f:
  CASES = json.load(f)
KEY = jax.random.key(0)


def case(section: str, name: str) -> dict:
  """The case `name` of `section` ('dense_features', 'linear_model', 'sequence_features')."""
  return next(c for c in CASES[section] if c['name'] == name)


def raw_input(value):
  """A JSON-stored input as jestimator's raw feature (sparse parts or a dense array)."""
  if isinstance(value, dict) and 'sparse' in value:
    s = value['sparse']
    values = np.asarray(s['values'])
    if values.dtype.kind == 'f':
      values = values.astype(np.float32)
    return jio.SparseTensorValue(np.asarray(s['indices'], np.int64).reshape(
        -1, len(s['dense_shape'])), values, np.asarray(s['dense_shape'], np.int64))
  return np.asarray(value)


def raw_features(c: dict) -> dict:
  return {k: raw_input(v) for k, v in c['features'].items()}


def with_table(params, table) -> dict:
  """`params` with every `embedding_weights` replaced by `table` (TF's constant initializer)."""
  def put(path, leaf):
    return jnp.asarray(table, jnp.float32) if path[-1].key == 'embedding_weights' else leaf
  return jax.tree_util.tree_map_with_path(put, params)


def dense_features_case(name: str, cols, table=None) -> np.ndarray:
  """Runs `DenseFeatures(cols)` on case `name`'s inputs and checks TF 2.15's output."""
  c = case('dense_features', name)
  x = fc.transform_features(raw_features(c), cols)
  layer = fc.DenseFeatures(cols)
  params = layer.init(KEY, x)
  if table is not None:
    params = with_table(params, table)
  got = np.asarray(layer.apply(params, x))
  np.testing.assert_allclose(got, c['expected'], rtol=1e-6, atol=1e-6)
  return got
