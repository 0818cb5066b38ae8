"""Estimator.evaluate / predict: exact evaluation, metrics vs numpy, no recompilation, events."""
from __future__ import annotations

import logging
import os
import re

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import _models
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.mode_keys import ModeKeys
from jestimator.run_config import RunConfig


def _train_input(x, y):
  return inputs.numpy_input_fn({'x': x}, y, batch_size=16, num_epochs=None, shuffle=True, seed=0)


def _eval_input(x, y, batch_size=32):
  return inputs.numpy_input_fn({'x': x}, y, batch_size=batch_size, shuffle=False)


def _numpy_batches(x, y, kernel, bias, batch_size=32):
  """Per-batch mean losses and per-row (loss, prob) in float64 numpy."""
  per_row = _models.numpy_logistic_loss(x, y, kernel, bias)
  batch_losses = [per_row[i:i + batch_size].mean() for i in range(0, len(x), batch_size)]
  probs = 1 / (1 + np.exp(-(x.astype(np.float64) @ kernel[:, 0] + bias[0])))
  return np.array(batch_losses), probs


@pytest.mark.parametrize('padding_aware', [True, False, 'train_only'],
                         ids=['example_mask', 'jnp_mean', 'example_mask_in_train_only'])
def test_exact_evaluation_with_short_final_batch(data, model_dir, padding_aware):
  x, y = data
  calls = _models.Calls()
  est = Estimator(_models.linear_model_fn(calls, padding_aware=padding_aware), model_dir)
  est.train(_train_input(x, y), steps=5)
  results = est.evaluate(_eval_input(x, y))
  kernel = est.get_variable_value('params/Dense_0/kernel')
  bias = est.get_variable_value('params/Dense_0/bias')
  batch_losses, probs = _numpy_batches(x, y, kernel, bias)
  assert len(batch_losses) == 4  # 32, 32, 32 and a short batch of 4
  # TF's `loss`: the mean of per-batch mean losses (the short batch neither dropped nor diluted).
  np.testing.assert_allclose(results['loss'], batch_losses.mean(), rtol=1e-5)
  assert not np.isclose(batch_losses.mean(), batch_losses[:3].mean(), rtol=1e-4)
  # Metrics count every one of the 100 rows exactly once.
  np.testing.assert_allclose(results['accuracy'], np.mean((probs > 0.5) == (y == 1)), atol=1e-7)
  np.testing.assert_allclose(results['mean_prob'], probs.mean(), rtol=1e-5)
  assert results['global_step'] == 5
  assert set(results) == {'loss', 'accuracy', 'mean_prob', 'global_step'}
  eval_sizes = {size for mode, size in calls.sizes if mode == ModeKeys.EVAL}
  if padding_aware is True:
    assert eval_sizes == {32}  # the short batch was padded: no eval step for 4 rows
  else:
    assert 4 in eval_sizes  # a plain jnp.mean loss runs the short batch at its own shape


def test_evaluate_steps_and_checkpoint_path(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(),
                  model_dir, config=RunConfig(save_checkpoints_steps=2))
  est.train(_train_input(x, y), steps=4)
  kernel = est.get_variable_value('params/Dense_0/kernel')
  bias = est.get_variable_value('params/Dense_0/bias')
  batch_losses, _ = _numpy_batches(x, y, kernel, bias)
  np.testing.assert_allclose(est.evaluate(_eval_input(x, y), steps=2)['loss'],
                             batch_losses[:2].mean(), rtol=1e-5)
  older = est.evaluate(_eval_input(x, y), checkpoint_path=os.path.join(model_dir, '2'))
  assert older['global_step'] == 2
  assert not np.isclose(older['loss'], batch_losses.mean(), rtol=1e-5)
  with pytest.raises(ValueError, match='checkpoint_path'):
    est.evaluate(_eval_input(x, y), checkpoint_path=os.path.join(model_dir, '3'))
  with pytest.raises(ValueError, match='steps'):
    est.evaluate(_eval_input(x, y), steps=0)


def test_evaluate_without_checkpoint_uses_fresh_variables(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  results = est.evaluate(_eval_input(x, y))
  assert results['global_step'] == 0 and np.isfinite(results['loss'])
  assert est.latest_checkpoint() is None


_NO_CHECKPOINT_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import _models
from jestimator import inputs
from jestimator.estimator import Estimator
x, y = _models.make_data(20)
est = Estimator(_models.linear_model_fn(), {model_dir!r})
est.evaluate(inputs.numpy_input_fn({{'x': x}}, y, batch_size=10, shuffle=False))
list(est.predict(inputs.numpy_input_fn({{'x': x}}, batch_size=10, shuffle=False)))
"""


def test_no_checkpoint_is_a_warning_visible_by_default(tmp_path):
  """A mistyped model_dir silently gave random weights in TF (an INFO line nobody sees)."""
  import subprocess
  import sys
  typo = str(tmp_path / 'modle_dir')
  tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = _NO_CHECKPOINT_SCRIPT.format(tests=tests, model_dir=typo)
  out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                       timeout=120)  # no logging configured: Python's defaults
  assert out.returncode == 0, out.stderr[-3000:]
  lines = [l for l in out.stderr.splitlines() if f'No checkpoint in model_dir {typo!r}' in l]
  assert len(lines) == 2, out.stderr[-3000:]
  assert "mode 'eval'" in lines[0] and "mode 'infer'" in lines[1]
  assert 'freshly initialized variables' in lines[0]


def test_checkpoint_path_missing_or_unreadable_is_an_error(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir, config=RunConfig(save_checkpoints_steps=2))
  est.train(_train_input(x, y), steps=4)
  for path, match in ((os.path.join(model_dir, '3'), 'does not exist'),
                      (os.path.join(model_dir + '_typo', '4'), 'does not exist')):
    with pytest.raises(ValueError, match=f'checkpoint_path {re.escape(repr(path))} {match}'):
      est.evaluate(_eval_input(x, y), checkpoint_path=path)
    with pytest.raises(ValueError, match=match):
      list(est.predict(inputs.numpy_input_fn({'x': x}, batch_size=10, shuffle=False),
                       checkpoint_path=path))
  with open(os.path.join(model_dir, '2', 'meta', 'metadata'), 'w') as f:
    f.write('{')
  with pytest.raises(ValueError, match='not a complete checkpoint: meta/metadata is unreadable'):
    est.evaluate(_eval_input(x, y), checkpoint_path=os.path.join(model_dir, '2'))


def test_no_recompilation_on_repeated_evaluate_and_predict(data, model_dir, compile_counter):
  x, y = data
  calls = _models.Calls()
  est = Estimator(_models.linear_model_fn(calls), model_dir)
  est.train(_train_input(x, y), steps=3)
  ev, pred = _eval_input(x, y), inputs.numpy_input_fn({'x': x}, batch_size=32, shuffle=False)
  first = est.evaluate(ev)
  list(est.predict(pred))
  compile_counter.reset()
  n_calls = calls.count()
  assert est.evaluate(ev) == first
  assert est.evaluate(_eval_input(x, y)) == first  # a new input_fn of the same shapes
  assert len(list(est.predict(pred))) == 100
  assert compile_counter.n == 0 and calls.count() == n_calls
  # More training, then evaluate and predict on the new checkpoint: still nothing compiled for
  # evaluation or prediction (and the train step itself is reused as well).
  est.train(_train_input(x, y), steps=2)
  assert est.evaluate(ev)['global_step'] == 5
  list(est.predict(pred))
  assert compile_counter.n == 0 and calls.count() == n_calls

  # A second Estimator on the same model_dir restores once, then reuses its compiled steps.
  other = Estimator(_models.linear_model_fn(calls), model_dir)
  other.evaluate(ev)
  list(other.predict(pred))
  compile_counter.reset()
  n_calls = calls.count()
  other.evaluate(ev)
  list(other.predict(pred))
  assert compile_counter.n == 0 and calls.count() == n_calls


def test_predict(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  est.train(_train_input(x, y), steps=3)
  kernel = est.get_variable_value('params/Dense_0/kernel')
  bias = est.get_variable_value('params/Dense_0/bias')
  _, probs = _numpy_batches(x, y, kernel, bias)
  pred_input = inputs.numpy_input_fn({'x': x}, batch_size=32, shuffle=False)
  rows = list(est.predict(pred_input))
  assert len(rows) == 100  # one per input row, the short last batch included
  assert sorted(rows[0]) == ['logits', 'probs', 'x']
  np.testing.assert_array_equal(np.stack([r['x'] for r in rows]), x)  # in order
  np.testing.assert_allclose([r['probs'] for r in rows], probs, rtol=1e-5)
  batches = list(est.predict(pred_input, yield_single_examples=False))
  assert [len(b['probs']) for b in batches] == [32, 32, 32, 4]
  only = list(est.predict(pred_input, predict_keys=['probs']))
  assert len(only) == 100 and all(list(r) == ['probs'] for r in only)
  with pytest.raises(ValueError, match='nope'):
    next(est.predict(pred_input, predict_keys=['probs', 'nope']))
  # Labels in a predict input are ignored.
  assert len(list(est.predict(_eval_input(x, y)))) == 100


def test_interleaved_predict_generators(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  est.train(_train_input(x, y), steps=2)
  a_in = inputs.numpy_input_fn({'x': x[:40]}, batch_size=8, shuffle=False)
  b_in = inputs.numpy_input_fn({'x': x[40:]}, batch_size=8, shuffle=False)
  expected_a = [r['probs'] for r in est.predict(a_in)]
  expected_b = [r['probs'] for r in est.predict(b_in)]
  ga, gb = est.predict(a_in), est.predict(b_in)
  got_a, got_b = [], []
  for _ in range(40):
    got_a.append(next(ga)['probs'])
    got_b.append(next(gb)['probs'])
  got_b.extend(r['probs'] for r in gb)
  got_a.extend(r['probs'] for r in ga)
  np.testing.assert_array_equal(got_a, expected_a)
  np.testing.assert_array_equal(got_b, expected_b)
  assert len(got_b) == 60


def _scalars(logdir):
  acc = EventAccumulator(logdir)
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


def test_event_files_and_progress_lines(data, model_dir, caplog):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_summary_steps=2, log_step_count_steps=3))
  with caplog.at_level(logging.INFO, logger='jestimator'):
    est.train(_train_input(x, y), steps=6)
  progress = [r.getMessage() for r in caplog.records if 'examples/sec' in r.getMessage()]
  assert len(progress) == 2, progress  # every log_step_count_steps: steps 3 and 6
  # examples/sec is measured from the end of the first step, so compilation is excluded.
  assert re.match(r'train: step = 3/6, loss = [0-9.e+-]+, examples/sec = [0-9.]+, ETA 0:00:\d\d$',
                  progress[0]), progress[0]
  assert progress[1].startswith('train: step = 6/6, loss = ')
  train = _scalars(model_dir)
  assert [s for s, _ in train['loss']] == [2, 4, 6]
  assert all(np.isfinite(v) for _, v in train['loss'])
  assert [s for s, _ in train['global_step/sec']] == [3, 6]
  assert all(v > 0 for _, v in train['global_step/sec'])

  results = est.evaluate(_eval_input(x, y))
  named = est.evaluate(_eval_input(x[:50], y[:50]), name='valid')
  for logdir, res in ((est.eval_dir(), results), (est.eval_dir('valid'), named)):
    scalars = _scalars(logdir)
    assert set(scalars) == {'loss', 'accuracy', 'mean_prob'}
    for tag, series in scalars.items():
      assert len(series) == 1 and series[0][0] == 6
      np.testing.assert_allclose(series[0][1], res[tag], rtol=1e-6)
  assert os.path.isdir(os.path.join(model_dir, 'eval_valid'))


def test_evaluate_on_an_endless_input_without_steps_warns_once(data, model_dir, caplog):
  """Issue 24: TF ran forever without a word; here a warning at the start (a hook stops it)."""
  from jestimator import hooks as hooks_lib
  from jestimator.driver.evaluate import EndlessInputWarning
  x, y = data

  class StopAt5(hooks_lib.Hook):
    def after_step(self, ctx, values):
      if ctx.step >= 5:
        ctx.request_stop()

  est = Estimator(_models.linear_model_fn(), model_dir)
  endless = inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False)
  with caplog.at_level(logging.WARNING, logger='jestimator'):
    est.evaluate(endless, hooks=[StopAt5()])
    est.evaluate(endless, steps=5)                      # steps given: no warning
    est.evaluate(_eval_input(x, y))                     # ends: no warning
  warned = [r.getMessage() for r in caplog.records if 'without steps=' in r.getMessage()]
  assert warned == ['evaluate() runs without steps= and its input repeats forever '
                    '(num_epochs=None), so it will never end: pass steps=, or an input that ends']
  # An input whose end is unknown (a generator): after `after_secs` of evaluation, once.
  caplog.clear()
  hook = EndlessInputWarning(False, after_secs=0.0)
  hook.begin()
  for step in (1, 2):
    hook.after_step(hooks_lib.StepContext('eval', step, 1, 10, None), {})
  assert len([r for r in caplog.records if 'whose end is unknown' in r.getMessage()]) == 1
