"""Seeing training: the NaN stop, LoggingTensorHook, hook fetches in every verb, progress, logging."""
from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import _models
import jestimator as je
from jestimator import hooks as hooks_lib
from jestimator.driver import progress
from jestimator.checkpoints import Checkpointer
from jestimator.mode_keys import ModeKeys
from jestimator.spec import EstimatorSpec

BATCH = 10


def _in_order(x, y, num_epochs=None, batch_size=BATCH):
  return je.inputs.numpy_input_fn({'x': x}, y, batch_size=batch_size, num_epochs=num_epochs,
                                  shuffle=False)


# -- NaN ----------------------------------------------------------------------------------------
def _all_checkpoints_finite(model_dir) -> list[int]:
  ckpt = Checkpointer(model_dir, read_only=True)
  steps = ckpt.all_steps()
  for step in steps:
    for name, value in ckpt.restore_raw_variables(step).items():
      assert np.all(np.isfinite(value)), (step, name)
  return steps


@pytest.mark.parametrize('steps_per_loop', [1, 4])
def test_nan_at_a_known_step_stops_and_every_kept_checkpoint_is_finite(model_dir,
                                                                       steps_per_loop):
  # The reproduction, with retention at work: a NaN in row 501 (batches of 10 in order)
  # makes step 51 the first non-finite one; saves every 10 steps keep 2.
  x, y = _models.make_data(1000)
  x[501] = np.nan
  est = je.Estimator(_models.linear_model_fn(), model_dir, config=je.RunConfig(
      save_checkpoints_steps=10, keep_checkpoint_max=2, steps_per_loop=steps_per_loop,
      log_step_count_steps=1000, save_summary_steps=1000))
  with pytest.raises(hooks_lib.NanLossDuringTrainingError, match='at step 51;'):
    est.train(_in_order(x, y), max_steps=95)
  # Saves at the dispatches crossing multiples of 10 (with 4 steps a dispatch: 12, 20, 32, 40;
  # the one ending at 52 holds the NaN); retention kept the last two good ones.
  kept = [40, 50] if steps_per_loop == 1 else [32, 40]
  assert _all_checkpoints_finite(model_dir) == kept
  # Training again resumes from the good state and stops at the same step.
  with pytest.raises(hooks_lib.NanLossDuringTrainingError, match='at step 51;'):
    est.train(_in_order(x, y), max_steps=95)
  assert _all_checkpoints_finite(model_dir) == kept


def test_nan_check_can_be_turned_off(model_dir):
  x, y = _models.make_data(100)
  x[5] = np.nan
  est = je.Estimator(_models.linear_model_fn(), model_dir,
                     config=je.RunConfig(check_nan_loss=False))
  est.train(_in_order(x, y), steps=3)  # no error: the switch is off (TF without NanTensorHook)
  assert not np.all(np.isfinite(est.get_variable_value('params/Dense_0/kernel')))
  with pytest.raises(TypeError, match='check_nan_loss must be a bool'):
    je.RunConfig(check_nan_loss='yes')


# -- LoggingTensorHook --------------------------------------------------------------------------
def _logging_model_fn(features, labels, mode):
  x = features['x']
  logits = nn.Dense(1)(x)[:, 0]
  mean_x0 = jnp.mean(x[:, 0])
  if mode == ModeKeys.PREDICT:
    hook = hooks_lib.LoggingTensorHook({'mean_x0': mean_x0}, every_n_iter=2)
    return EstimatorSpec(mode, predictions={'logits': logits}, prediction_hooks=[hook])
  loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  train_hook = hooks_lib.LoggingTensorHook({'mean_x0': mean_x0, 'loss': 'loss'}, every_n_iter=3)
  eval_hook = hooks_lib.LoggingTensorHook(
      {'mean_x0': mean_x0}, every_n_iter=2,
      formatter=lambda v: f'eval mean_x0 = {float(v["mean_x0"]):.6f}')
  return EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1), training_hooks=[train_hook],
                       evaluation_hooks=[eval_hook])


def _logged(caplog, pattern):
  return [m.groups() for r in caplog.records if (m := re.match(pattern, r.getMessage()))]


def test_logging_tensor_hook_built_in_model_fn_logs_at_its_cadence(data, model_dir, caplog):
  x, y = data
  est = je.Estimator(_logging_model_fn, model_dir)
  with caplog.at_level(logging.INFO, logger='jestimator'):
    est.train(_in_order(x, y), steps=7)
  # Dispatches 0, 3, 6 of the call: global steps 1, 4, 7, each on batch step - 1.
  train_lines = _logged(caplog, r'mean_x0 = (\S+), loss = (\S+)$')
  assert len(train_lines) == 3, caplog.text
  for (value, loss), step in zip(train_lines, (1, 4, 7)):
    np.testing.assert_allclose(float(value), x[(step - 1) * BATCH:step * BATCH, 0].mean(),
                               rtol=1e-5)
    assert np.isfinite(float(loss))
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='jestimator'):
    est.evaluate(_in_order(x[:45], y[:45], num_epochs=1))
  # Batches 1, 3, 5 of 5 (the last one short), with the formatter of the hook.
  eval_lines = [float(v) for (v,) in _logged(caplog, r'eval mean_x0 = (\S+)$')]
  xs = x[:45, 0]
  np.testing.assert_allclose(eval_lines, [xs[0:10].mean(), xs[20:30].mean(), xs[40:45].mean()],
                             rtol=1e-5)
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='jestimator'):
    list(est.predict(je.inputs.numpy_input_fn({'x': x[:30]}, batch_size=BATCH, shuffle=False)))
  predict_lines = [float(v) for (v,) in _logged(caplog, r'mean_x0 = (\S+)$')]
  np.testing.assert_allclose(predict_lines, [x[0:10, 0].mean(), x[20:30, 0].mean()], rtol=1e-5)


def test_logging_tensor_hook_arguments_are_checked():
  with pytest.raises(ValueError, match='exactly one of every_n_iter and every_n_secs'):
    hooks_lib.LoggingTensorHook(['loss'])
  with pytest.raises(ValueError, match='every_n_iter must be a positive int'):
    hooks_lib.LoggingTensorHook(['loss'], every_n_iter=0)
  with pytest.raises(ValueError, match='built inside a model_fn'):
    hooks_lib.LoggingTensorHook({'w': np.ones(3)}, every_n_iter=1)


class _Asks(hooks_lib.Hook):
  def __init__(self, *names):
    self.names, self.seen = names, []

  def before_step(self, ctx):
    return self.names

  def after_step(self, ctx, values):
    self.seen.append(dict(values))


def test_hook_requests_are_honoured_or_name_what_can_be_fetched(data, model_dir):
  x, y = data
  est = je.Estimator(_models.linear_model_fn(), model_dir)
  with pytest.raises(ValueError, match=r"asked for 'accuracy', which the train step does not "
                                       r"produce; fetchable names are \[.*'loss'"):
    est.train(_in_order(x, y), steps=2, hooks=[_Asks('accuracy')])
  est.train(_in_order(x, y), steps=2)
  with pytest.raises(ValueError, match="asked for 'probs', which the eval step"):
    est.evaluate(_in_order(x, y, num_epochs=1), hooks=[_Asks('probs')])
  ask = _Asks('loss')
  results = est.evaluate(_in_order(x[:20], y[:20], num_epochs=1), hooks=[ask])
  np.testing.assert_allclose(np.mean([v['loss'] for v in ask.seen]), results['loss'], rtol=1e-6)
  ask = _Asks('probs')
  rows = list(est.predict(je.inputs.numpy_input_fn({'x': x[:15]}, batch_size=BATCH,
                                                   shuffle=False), hooks=[ask]))
  np.testing.assert_array_equal(np.concatenate([v['probs'] for v in ask.seen]),
                                [r['probs'] for r in rows])
  with pytest.raises(ValueError, match="asked for 'nope', which the predict step"):
    list(est.predict(je.inputs.numpy_input_fn({'x': x[:15]}, shuffle=False),
                     hooks=[_Asks('nope')]))


# -- progress -----------------------------------------------------------------------------------
class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_line_on_a_terminal_excludes_compilation(monkeypatch, caplog):
  clock = _Clock()
  monkeypatch.setattr(progress.logger, 'level', logging.NOTSET)
  out = _Terminal()
  hook = progress.ProgressHook(ModeKeys.TRAIN, terminal_secs=1.0, stream=out,
                               epoch=lambda: (2, 3), clock=clock)
  hook.begin()
  shown = []
  for step in range(1, 6):
    ctx = hooks_lib.StepContext(ModeKeys.TRAIN, step, 1, 8, total=10)
    asked = hook.before_step(ctx)
    clock.now += 30.0 if step == 1 else 1.0  # the first step compiles for 30 s
    hook.after_step(ctx, {'loss': np.float32(0.5)} if asked else {})
    shown.append(asked)
  hook.end(None)
  # A line is due once a second has passed when the step is dispatched: every other step here.
  assert shown == [['loss'], None, ['loss'], None, ['loss']]
  lines = out.getvalue().split('\r')[1:]
  # After step 5: 4 steps x 8 examples in the 4 s since step 1 ended -> 8 examples/s, 1 step/s.
  # A progress bar (issue 24: it was the log line), with the input's epoch.
  assert lines[-1] == ('train [###############---------------]  5/10  50%  epoch 2/3  8 ex/s  '
                       'loss 0.5  ETA 0:00:05\x1b[K\n')
  # Elsewhere the log line, examples/sec rounded (evaluate printed 400981.8).
  caplog.set_level(logging.INFO, logger='jestimator')
  caplog.clear()
  hook = progress.ProgressHook(ModeKeys.EVAL, every_n_steps=1, stream=io.StringIO(),
                               show_loss=False, clock=clock)
  hook.begin()
  for step in (1, 2):
    ctx = hooks_lib.StepContext(ModeKeys.EVAL, step, 1, 400982, total=2)
    hook.before_step(ctx)
    clock.now += 1.0
    hook.after_step(ctx, {'loss': np.float32(0.5)})
  assert [r.getMessage() for r in caplog.records if r.name == 'jestimator'] == [
      'evaluate: step = 2/2, examples/sec = 400982, ETA 0:00:00']
  assert out.getvalue().endswith('\n')


def test_progress_is_silent_after_set_verbosity_warning(monkeypatch):
  monkeypatch.setattr(progress.logger, 'level', logging.NOTSET)
  monkeypatch.setattr(progress.logger, 'handlers', list(progress.logger.handlers))
  monkeypatch.setattr(progress.logger, 'propagate', progress.logger.propagate)
  je.logging.set_verbosity('WARNING')
  out = _Terminal()
  hook = progress.ProgressHook(ModeKeys.TRAIN, stream=out)
  hook.begin()
  assert hook.before_step(hooks_lib.StepContext(ModeKeys.TRAIN, 1, 1, 8)) is None
  with pytest.raises(ValueError, match='unknown level name'):
    je.logging.set_verbosity('LOUD')


_SCRIPT = textwrap.dedent('''
    import logging, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import _models
    import jestimator as je
    {switch}
    x, y = _models.make_data(100)
    est = je.Estimator(_models.linear_model_fn(), {model_dir!r},
                       config=je.RunConfig(log_step_count_steps=4))
    def inp(labels):
      return je.inputs.numpy_input_fn({{'x': x}}, labels, batch_size=10, shuffle=False)
    est.train(inp(y))
    est.evaluate(inp(y))
    list(est.predict(inp(None)))
''')


@pytest.mark.slow
@pytest.mark.parametrize('switch', ['logging.basicConfig(level=logging.INFO)',
                                    'je.logging.set_verbosity(logging.INFO)'])
def test_progress_lines_shown_by_the_documented_switches(tmp_path, switch):
  tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = _SCRIPT.format(tests=tests, switch=switch,
                          model_dir=str(tmp_path / 'm'))
  err = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                       timeout=120, check=True).stderr
  # 10 batches, end known in advance: lines at 4, 8 and the last step, with an ETA.
  train = re.findall(r'train: step = (\d+)/10, loss = \S+, examples/sec = \S+, ETA', err)
  assert train == ['4', '8', '10'], err
  assert re.search(r'evaluate: step = 10/10, examples/sec', err), err
  assert re.search(r'predict: step = 10/10, examples/sec', err), err


@pytest.mark.parametrize('configured', [True, False])
def test_set_verbosity_honours_the_applications_logging_format(tmp_path, configured):
  """Issue 24: the demo's basicConfig(format='%(message)s') printed `INFO:jestimator:...`
  because set_verbosity added its own handler and stopped propagation; a library adds none when
  the application configured logging. Unconfigured, the fallback still prints the lines."""
  script = textwrap.dedent(f'''
      import logging
      import jestimator as je
      {"logging.basicConfig(level=logging.WARNING, format='%(message)s')" if configured else ''}
      je.logging.set_verbosity(logging.INFO)
      logging.getLogger('jestimator').info('hello from jestimator')
      logging.getLogger('jestimator').warning('careful')
  ''')
  err = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                       timeout=120, check=True).stderr
  lines = [l for l in err.splitlines() if 'hello' in l or 'careful' in l]
  if configured:
    assert lines == ['hello from jestimator', 'careful'], err
  else:
    assert lines == ['INFO:jestimator:hello from jestimator', 'WARNING:jestimator:careful'], err
