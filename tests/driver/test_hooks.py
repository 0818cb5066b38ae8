"""Hooks: call order, stop requests, stock hooks, saver listeners, early stopping, profiler."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import _models
from jestimator import early_stopping, summaries
from jestimator import hooks as hooks_lib
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig


def _repeat(x, y, batch_size=10):
  return inputs.numpy_input_fn({'x': x}, y, batch_size=batch_size, num_epochs=None, shuffle=False)


def _step(est) -> int:
  return int(est.get_variable_value('global_step'))


class Recorder(hooks_lib.Hook):
  """Records every call; optionally asks for the loss and stops at `stop_at`."""

  def __init__(self, want_loss=False, stop_at=None):
    self.events, self.losses = [], []
    self.want_loss, self.stop_at = want_loss, stop_at

  def begin(self):
    self.events.append(('begin',))

  def after_create_state(self, state):
    self.events.append(('after_create_state',))

  def before_step(self, ctx):
    self.events.append(('before_step', ctx.step))
    return ['loss'] if self.want_loss else None

  def after_step(self, ctx, values):
    self.events.append(('after_step', ctx.step))
    if 'loss' in values:
      self.losses.append(values['loss'])
    if self.stop_at is not None and ctx.step >= self.stop_at:
      ctx.request_stop()

  def end(self, state):
    self.events.append(('end',))


@pytest.fixture(scope='module')
def est(tmp_path_factory):
  """One compiled linear-model estimator shared by the tests of this module (steps add up)."""
  return Estimator(_models.linear_model_fn(), str(tmp_path_factory.mktemp('hooks') / 'model'),
                   config=RunConfig(save_checkpoints_steps=1000))


def test_call_order_in_train_evaluate_and_predict(est, data):
  x, y = data
  start = est.latest_checkpoint() and _step(est) or 0
  h = Recorder(want_loss=True)
  est.train(_repeat(x, y), steps=2, hooks=[h])
  s = start
  assert h.events == [('begin',), ('after_create_state',), ('before_step', s + 1),
                      ('after_step', s + 1), ('before_step', s + 2), ('after_step', s + 2),
                      ('end',)]
  assert len(h.losses) == 2 and all(np.isfinite(h.losses))
  assert all(isinstance(v, np.ndarray) for v in h.losses)  # host values
  h = Recorder()
  est.evaluate(inputs.numpy_input_fn({'x': x[:15]}, y[:15], batch_size=10, shuffle=False),
               hooks=[h])
  assert h.events == [('begin',), ('after_create_state',), ('before_step', 1), ('after_step', 1),
                      ('before_step', 2), ('after_step', 2), ('end',)]
  h = Recorder()
  list(est.predict(inputs.numpy_input_fn({'x': x[:15]}, batch_size=10, shuffle=False),
                   hooks=[h]))
  assert h.events == [('begin',), ('after_create_state',), ('before_step', 1), ('after_step', 1),
                      ('before_step', 2), ('after_step', 2), ('end',)]


def test_request_stop(est, data):
  x, y = data
  est.train(_repeat(x, y), steps=1)
  start = _step(est)
  h = Recorder(stop_at=start + 3)
  est.train(_repeat(x, y), steps=100, hooks=[h])
  assert _step(est) == start + 3  # a checkpoint is written at the stop
  assert h.events[-1] == ('end',)
  # A stop request in evaluate ends it after that batch.
  h = Recorder(stop_at=2)
  est.evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=10, shuffle=False), hooks=[h])
  assert h.events.count(('after_step', 3)) == 0 and ('after_step', 2) in h.events


def test_stop_at_step_hook(est, data):
  x, y = data
  est.train(_repeat(x, y), steps=1)
  start = _step(est)
  est.train(_repeat(x, y), hooks=[hooks_lib.StopAtStepHook(num_steps=2)])
  assert _step(est) == start + 2  # relative to the step at which train() started
  est.train(_repeat(x, y), hooks=[hooks_lib.StopAtStepHook(last_step=start + 5)])
  assert _step(est) == start + 5
  with pytest.raises(ValueError, match='exactly one'):
    hooks_lib.StopAtStepHook()
  with pytest.raises(ValueError, match='exactly one'):
    hooks_lib.StopAtStepHook(num_steps=1, last_step=2)


def test_nan_loss_names_the_step(data, tmp_path):
  x, y = data
  x = x.copy()
  x[50:] = np.nan  # batches of 10 in order: step 6 is the first with a NaN loss
  fn = inputs.numpy_input_fn({'x': x}, y, batch_size=10, shuffle=False)
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'a'),
                  config=RunConfig(log_step_count_steps=1, save_summary_steps=1))
  threads = threading.active_count()
  with pytest.raises(hooks_lib.NanLossDuringTrainingError, match='at step 6'):
    est.train(fn)
  # Nothing NaN was saved: only the checkpoint of the initial state, written when training
  # started (as TF's CheckpointSaverHook).
  assert est.latest_checkpoint() == os.path.join(est.model_dir, '0')
  # No prefetch or event-writer thread left running (threads may take a moment to finish).
  deadline = time.monotonic() + 5
  while threading.active_count() > threads and time.monotonic() < deadline:
    time.sleep(0.05)
  assert threading.active_count() <= threads, threading.enumerate()
  events = EventAccumulator(est.model_dir)
  events.Reload()  # the losses before the NaN were flushed
  assert [e.step for e in events.Scalars('loss')] == [1, 2, 3, 4, 5]
  # The flags are read at the next sync (here the log line at step 8), but name the exact step.
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'b'),
                  config=RunConfig(log_step_count_steps=4))
  with pytest.raises(hooks_lib.NanLossDuringTrainingError, match='at step 6'):
    est.train(fn)
  # RunConfig(fail_on_nan_loss=False) stops instead of raising, and still saves no non-finite
  # state.
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'c'),
                  config=RunConfig(log_step_count_steps=1000, save_checkpoints_steps=2,
                                   fail_on_nan_loss=False))
  est.train(fn)
  assert _step(est) == 4  # the last checkpoint before the NaN at step 6
  # A hook never configures the built-in check: with it on (raising), a NanLossHook that would
  # only stop does not turn the error into a stop.
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'd'),
                  config=RunConfig(log_step_count_steps=1000, save_checkpoints_steps=2))
  with pytest.raises(hooks_lib.NanLossDuringTrainingError, match='at step 6'):
    est.train(fn, hooks=[hooks_lib.NanLossHook(every_n_steps=1, fail_on_nan_loss=False)])
  # With the built-in check off, NanLossHook acts as TF's NanTensorHook: fail_on_nan_loss=False
  # stops after the bad step, and training ends as any stopped run does (its final save, which
  # TF's CheckpointSaverHook also wrote).
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'e'),
                  config=RunConfig(log_step_count_steps=1000, save_checkpoints_steps=2,
                                   check_nan_loss=False))
  est.train(fn, hooks=[hooks_lib.NanLossHook(every_n_steps=1, fail_on_nan_loss=False)])
  assert _step(est) == 6
  assert np.isnan(est.get_variable_value('params/Dense_0/kernel')).any()
  with pytest.raises(TypeError, match='fail_on_nan_loss must be a bool'):
    RunConfig(fail_on_nan_loss='no')


def test_step_counter_hook(est, data):
  x, y = data

  class Writer:
    def __init__(self):
      self.calls = []

    def scalars(self, step, values):
      self.calls.append((step, dict(values)))

  writer = Writer()
  est.train(_repeat(x, y), steps=1)
  start = _step(est)
  est.train(_repeat(x, y), steps=6, hooks=[hooks_lib.StepCounterHook(writer, every_n_steps=2)])
  steps = [s for s, _ in writer.calls]
  assert steps == [s for s in range(start + 1, start + 7) if s % 2 == 0]  # multiples of 2
  assert all(list(v) == ['global_step/sec'] and v['global_step/sec'] > 0 for _, v in writer.calls)


class Listener(hooks_lib.CheckpointSaverListener):

  def __init__(self, model_dir, stop_at=None):
    self.model_dir, self.stop_at = model_dir, stop_at
    self.events = []

  def begin(self):
    self.events.append(('begin',))

  def before_save(self, step):
    self.events.append(('before_save', step))

  def after_save(self, step):
    # The checkpoint is complete when listeners hear of it.
    assert os.path.isdir(os.path.join(self.model_dir, str(step)))
    self.events.append(('after_save', step))
    return self.stop_at is not None and step >= self.stop_at

  def end(self, step):
    self.events.append(('end', step))


def test_checkpoint_saver_listener(data, tmp_path):
  x, y = data
  model_dir = str(tmp_path / 'm')
  est = Estimator(_models.linear_model_fn(), model_dir, config=RunConfig(save_checkpoints_steps=2))
  listener = Listener(model_dir)
  est.train(_repeat(x, y), max_steps=5, saving_listeners=[listener])
  assert listener.events == [('begin',), ('before_save', 0), ('after_save', 0),
                             ('before_save', 2), ('after_save', 2),
                             ('before_save', 4), ('after_save', 4), ('before_save', 5),
                             ('after_save', 5), ('end', 5)]
  stopper = Listener(model_dir, stop_at=8)  # a truthy after_save stops training
  est.train(_repeat(x, y), max_steps=20, saving_listeners=[stopper])
  assert _step(est) == 8
  assert stopper.events[-3:] == [('before_save', 8), ('after_save', 8), ('end', 8)]


def test_early_stopping_over_eval_results(est, data):
  x, y = data
  eval_dir = str(est.eval_dir('early'))
  for step, loss in ((10, 1.0), (20, 0.95), (30, 0.92)):
    summaries.append_eval_results(eval_dir, step, {'loss': loss}, None)

  def steps_run(hook):
    before = _step(est) if est.latest_checkpoint() else 0
    est.train(_repeat(x, y), steps=3, hooks=[hook])
    return _step(est) - before

  no_decrease = lambda delta: early_stopping.stop_if_no_decrease_hook(
      est, 'loss', max_steps_without_decrease=20, eval_dir=eval_dir, run_every_steps=1,
      min_delta=delta)
  # Improvements of 0.05 and 0.03 are below min_delta=0.1: no real decrease for 20 steps.
  assert steps_run(no_decrease(0.1)) == 1
  assert steps_run(no_decrease(0.0)) == 3  # with min_delta=0 step 30 is the best: go on
  assert steps_run(early_stopping.stop_if_no_increase_hook(
      est, 'loss', 20, eval_dir=eval_dir, run_every_steps=1)) == 1  # best (highest) at step 10
  higher = early_stopping.stop_if_higher_hook(est, 'loss', 0.9, eval_dir=eval_dir,
                                              run_every_steps=1)
  assert steps_run(higher) == 1
  lower = early_stopping.stop_if_lower_hook(est, 'loss', 0.9, eval_dir=eval_dir,
                                            run_every_steps=1)
  assert steps_run(lower) == 3
  assert steps_run(early_stopping.stop_if_no_decrease_hook(
      est, 'loss', 20, eval_dir=eval_dir, min_steps=40, run_every_steps=1, min_delta=0.1)) == 3

  # End to end: evaluate() records results that the hook (default eval_dir) reads.
  est.evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=50, shuffle=False))
  assert steps_run(early_stopping.stop_if_lower_hook(est, 'loss', 1e9, run_every_steps=1)) == 1
  assert steps_run(early_stopping.stop_if_lower_hook(est, 'loss', -1.0, run_every_steps=1)) == 3


def test_profiler_hook_writes_a_trace(est, data, tmp_path):
  x, y = data
  out = str(tmp_path / 'profile')
  est.train(_repeat(x, y), steps=1)
  start = _step(est)
  hook = hooks_lib.ProfilerHook(out, start_step=start + 2, num_steps=2)
  est.train(_repeat(x, y), steps=5, hooks=[hook])
  assert hook.traced_steps == [start + 2, start + 3]
  files = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs]
  assert any(f.endswith('.xplane.pb') and os.path.getsize(f) > 0 for f in files), files
