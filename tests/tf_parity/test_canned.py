"""Canned estimators against TF 2.15 from TF's known weights (`data/canned.json`, written by
`tf_scripts/gen_canned.py`): the cases of TF's canned tests that write weights to a checkpoint
and then evaluate and predict (every metric, every numeric prediction), and 3 training steps
from those weights with the real SGD, Adagrad and Ftrl, where TF's tests mock the optimizer.

Known weights reach jestimator through the public API: a checkpoint written with
`jestimator.checkpoints.Checkpointer` under TF's variable names, then `warm_start_from`.
Evaluate / predict run after one SGD(0) step (the warm start happens when training starts), so
`global_step` is 1 where TF's is 100. (Baseline*: see `test_fixes.py` and the README.)
"""
from __future__ import annotations

import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import columns as fc

from ._tf import assert_close, load, numpy_input, tf_variables, write_weights

DATA = load('canned')
CASES = DATA['cases']


def _columns(spec):
  out = []
  for s in spec:
    if 'numeric' in s:
      out.append(fc.numeric_column(s['numeric'], shape=s.get('shape', (1,))))
    else:
      out.append(fc.categorical_column_with_vocabulary_list(s['vocabulary'], s['list']))
  return out


def _make(case, model_dir, optimizer, warm_start_from=None):
  kw = dict(case['kwargs'])
  cls = getattr(je, case['model'])
  config = je.RunConfig(seed=0, log_step_count_steps=10**9)
  if case['model'].startswith('DNNLinearCombined'):
    return cls(model_dir=model_dir, linear_feature_columns=_columns(case['columns']['linear']),
               dnn_feature_columns=_columns(case['columns']['dnn']), linear_optimizer=optimizer,
               dnn_optimizer=optimizer, config=config, warm_start_from=warm_start_from, **kw)
  return cls(feature_columns=_columns(case['columns']), model_dir=model_dir, optimizer=optimizer,
             config=config, warm_start_from=warm_start_from, **kw)


def _data(case):
  features = {}
  for k, v in case['features'].items():
    a = np.asarray(v)
    features[k] = a.astype(np.float32) if a.dtype.kind in 'iuf' else a.astype(object)
  labels = np.asarray(case['labels'])
  return features, labels.astype(object) if labels.dtype.kind == 'U' else labels


@pytest.mark.parametrize('name', sorted(CASES))
def test_evaluate_and_predict_from_known_weights(tmp_path, name):
  case = CASES[name]
  features, labels = _data(case)
  n = len(labels)
  donor = write_weights(str(tmp_path / 'weights'), case['weights'])
  est = _make(case, str(tmp_path / 'model'), optax.sgd(0.0), warm_start_from=donor)
  est.train(numpy_input(features, labels, n), max_steps=1)
  got = tf_variables(est)
  for var, value in case['weights'].items():
    assert_close(got[var], value, what=var)
  metrics = est.evaluate(numpy_input(features, labels, n))
  expected = case['expected']['metrics']
  assert set(metrics) == set(expected)
  for key, value in expected.items():
    if key != 'global_step':
      assert_close(metrics[key], value, rtol=1e-5, atol=1e-5, what=key)
  preds = list(est.predict(numpy_input(features, None, n)))
  for key, value in case['expected']['predictions'].items():
    assert_close(np.stack([p[key] for p in preds]), value, rtol=1e-5, what=key)


@pytest.mark.parametrize('opt', ['SGD', 'Adagrad', 'Ftrl'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_three_training_steps_match_tf(tmp_path, name, opt):
  """TF 2.15's real optimizers (Keras legacy) at learning rate 0.1, 3 steps on one batch."""
  case = CASES[name]
  features, labels = _data(case)
  donor = write_weights(str(tmp_path / 'weights'), case['weights'])
  optimizer = je.optimizers.get_optimizer(opt, learning_rate=DATA['learning_rate'])
  est = _make(case, str(tmp_path / 'model'), optimizer, warm_start_from=donor)
  est.train(numpy_input(features, labels, len(labels), epochs=None), max_steps=3)
  got = tf_variables(est)
  for var, value in case['expected']['trained'][opt].items():
    # Adagrad: optax adds epsilon inside the root, Keras after it (1e-7 relative per step).
    assert_close(got[var], value, rtol=1e-5, atol=1e-5, what=f'{var} after 3 {opt} steps')
