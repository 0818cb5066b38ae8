"""`run_evaluator`: a standalone evaluator job that watches model_dir, resumes, and stops."""
from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

import _models
import jestimator as je
from jestimator import inputs
from jestimator.checkpoints import Checkpointer
from jestimator.distributed import EvalSpec, run_evaluator
from jestimator.distributed.evaluator import STATE_FILE
from jestimator.export import FinalExporter, build_raw_serving_input_fn
from jestimator.summaries import EVAL_RESULTS_FILE

X, Y = _models.make_data(64, seed=2)
SERVING = build_raw_serving_input_fn({'x': ('float32', [_models.N_FEATURES])})


def _estimator(model_dir):
  config = je.RunConfig(seed=0, keep_checkpoint_max=None, save_checkpoints_steps=2,
                        log_step_count_steps=1000)
  return je.Estimator(_models.linear_model_fn(lr=0.1), model_dir, config=config)


def _train(model_dir, max_steps):
  _estimator(model_dir).train(
      inputs.numpy_input_fn({'x': X}, Y, batch_size=8, num_epochs=None, shuffle=True, seed=0),
      max_steps=max_steps)


def _spec(**kwargs):
  kwargs = {'steps': None, 'start_delay_secs': 0, 'throttle_secs': 0, **kwargs}
  return EvalSpec(inputs.numpy_input_fn({'x': X}, Y, batch_size=16, shuffle=False), **kwargs)


def _evaluated(est):
  with open(os.path.join(est.eval_dir(), EVAL_RESULTS_FILE)) as f:
    return [json.loads(line)['global_step'] for line in f if line.strip()]


def _numpy_loss(model_dir, step):
  v = Checkpointer(model_dir, read_only=True).restore_raw_variables(step)
  return float(np.mean(_models.numpy_logistic_loss(X, Y, v['params/Dense_0/kernel'],
                                                   v['params/Dense_0/bias'])))


def test_restarted_evaluator_resumes_and_stops_at_max_steps(model_dir):
  _train(model_dir, 6)  # checkpoints 2, 4, 6
  first = _estimator(model_dir)
  # The trainer "died" at 6 < max_steps: the evaluator gives up after timeout_secs, not hangs.
  with pytest.raises(TimeoutError, match=r'no new checkpoint .* \(last evaluated: 6,'):
    run_evaluator(first, _spec(exporters=FinalExporter('final', SERVING)), max_steps=10,
                  poll_secs=0.05, timeout_secs=0.5)
  assert _evaluated(first) == [2, 4, 6]
  with open(os.path.join(first.eval_dir(), STATE_FILE)) as f:
    assert json.load(f) == {'evaluated_steps': [2, 4, 6]}

  _train(model_dir, 10)  # the trainer resumes: checkpoints 8, 10
  restarted = _estimator(model_dir)  # a new evaluator job
  metrics, exports = run_evaluator(restarted, _spec(exporters=FinalExporter('final', SERVING)),
                                   max_steps=10, poll_secs=0.05, timeout_secs=5)
  assert _evaluated(restarted) == [2, 4, 6, 8, 10]  # 2, 4, 6 not again
  assert metrics['global_step'] == 10
  assert metrics['loss'] == pytest.approx(_numpy_loss(model_dir, 10), rel=1e-5)
  # FinalExporter: only for the checkpoint at max_steps.
  assert len(exports) == 1
  assert os.path.dirname(exports[0]) == os.path.join(model_dir, 'export', 'final')
  with open(os.path.join(exports[0], 'signature.json')) as f:
    assert json.load(f)['global_step'] == 10

  # Done already: returns at once with the last metrics, evaluating nothing.
  again, exports = run_evaluator(_estimator(model_dir), _spec(), max_steps=10, timeout_secs=0.1)
  assert exports == [] and again['global_step'] == 10
  assert again['loss'] == pytest.approx(metrics['loss'])
  assert _evaluated(restarted) == [2, 4, 6, 8, 10]


def test_evaluator_follows_a_running_trainer(model_dir):
  got = {}

  def evaluate():
    try:
      got['metrics'], _ = run_evaluator(_estimator(model_dir), _spec(), max_steps=8,
                                        poll_secs=0.02, timeout_secs=60)
    except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
      got['error'] = e

  thread = threading.Thread(target=evaluate)
  thread.start()  # before any checkpoint exists (model_dir does not exist yet)
  try:
    _train(model_dir, 8)
  finally:
    thread.join(timeout=60)
  assert not thread.is_alive()
  if 'error' in got:
    raise got['error']
  est = _estimator(model_dir)
  assert _evaluated(est) == [2, 4, 6, 8]  # each checkpoint once, in order, then it stopped
  assert got['metrics']['loss'] == pytest.approx(_numpy_loss(model_dir, 8), rel=1e-5)


def test_latest_only_skips_to_the_newest_checkpoint(model_dir):
  _train(model_dir, 6)
  est = _estimator(model_dir)
  metrics, _ = run_evaluator(est, _spec(steps=1), max_steps=6, latest_only=True, timeout_secs=5)
  assert _evaluated(est) == [6] and metrics['global_step'] == 6


def test_evaluator_argument_errors(model_dir):
  est = _estimator(model_dir)
  with pytest.raises(ValueError, match='max_steps must be a positive integer, got 0'):
    run_evaluator(est, _spec(), max_steps=0)
  with pytest.raises(ValueError, match='poll_secs must be a number > 0'):
    run_evaluator(est, _spec(), max_steps=5, poll_secs=0)
  with pytest.raises(ValueError, match='timeout_secs must be a number > 0'):
    run_evaluator(est, _spec(), max_steps=5, timeout_secs=-1)
  with pytest.raises(TypeError, match='eval_spec must be an EvalSpec'):
    run_evaluator(est, None, max_steps=5)
  os.makedirs(est.eval_dir())
  with open(os.path.join(est.eval_dir(), STATE_FILE), 'w') as f:
    f.write('{"evaluated": ')
  with pytest.raises(ValueError, match=f'{STATE_FILE} is not a valid evaluator state'):
    run_evaluator(est, _spec(), max_steps=5)
