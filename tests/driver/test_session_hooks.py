"""TF names around hooks and estimators: the SessionRunHook adapter, SecondOrStepTimer,
NanTensorHook, FinalOpsHook, CheckpointSaverHook's error, add_metrics, jestimator.experimental."""
from __future__ import annotations

import numpy as np
import pytest

import _models
import jestimator as je
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig


def _fn(x, y, epochs=None):
  return inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=epochs, shuffle=False)


class TFStyleHook(je.SessionRunHook):
  """A TF hook ported by changing imports: fetches the loss and the global step, stops at 3."""

  def begin(self):
    self.seen, self.created = [], False

  def after_create_session(self, session, coord):
    self.created = session is not None and coord is None

  def before_run(self, run_context):
    return je.SessionRunArgs({'loss': 'loss', 'step': 'global_step'})

  def after_run(self, run_context, run_values):
    self.seen.append((int(run_values.results['step']), float(run_values.results['loss'])))
    if run_values.results['step'] >= 3:
      run_context.request_stop()


def test_session_run_hook_adapter(data, tmp_path):
  x, y = data
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'm'))
  hook = TFStyleHook()
  est.train(_fn(x, y), hooks=[hook], max_steps=100)
  assert hook.created
  assert [s for s, _ in hook.seen] == [1, 2, 3]
  assert all(np.isfinite(loss) for _, loss in hook.seen)
  assert int(est.get_variable_value('global_step')) == 3

  class Feeds(je.SessionRunHook):
    def before_run(self, run_context):
      return je.SessionRunArgs('loss', feed_dict={'x': 1})

  with pytest.raises(ValueError, match='feed_dict is not supported'):
    est.train(_fn(x, y), hooks=[Feeds()], steps=1)


def test_second_or_step_timer_as_tf():
  # TF's basic_session_run_hooks.SecondOrStepTimer, its contract step by step.
  with pytest.raises(ValueError, match='Either every_secs or every_steps'):
    je.SecondOrStepTimer()
  with pytest.raises(ValueError, match='Can not provide both'):
    je.SecondOrStepTimer(every_secs=1, every_steps=1)
  timer = je.SecondOrStepTimer(every_steps=3)
  assert timer.should_trigger_for_step(1) and timer.last_triggered_step() is None
  assert timer.update_last_triggered_step(1) == (None, None)
  assert not timer.should_trigger_for_step(1)
  assert not timer.should_trigger_for_step(3)
  assert timer.should_trigger_for_step(4)
  elapsed_secs, elapsed_steps = timer.update_last_triggered_step(4)
  assert elapsed_steps == 3 and elapsed_secs >= 0 and timer.last_triggered_step() == 4
  now = [1000.0]
  timer = je.SecondOrStepTimer(every_secs=10, clock=lambda: now[0])
  timer.update_last_triggered_step(5)
  now[0] += 9.9
  assert not timer.should_trigger_for_step(100)
  now[0] += 0.1
  assert timer.should_trigger_for_step(6) and not timer.should_trigger_for_step(5)
  timer.reset()
  assert timer.should_trigger_for_step(5)


def test_nan_tensor_hook(data, tmp_path):
  x, y = data
  x = x.copy()
  x[50:] = np.nan  # step 6 is the first NaN loss
  cfg = RunConfig(check_nan_loss=False, save_checkpoints_steps=1000)
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'a'), config=cfg)
  with pytest.raises(je.hooks.NanLossDuringTrainingError, match=r'NaN \(step 6\)'):
    est.train(_fn(x, y, 1), hooks=[je.NanTensorHook('loss')])
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'b'), config=cfg)
  est.train(_fn(x, y, 1), hooks=[je.NanTensorHook('loss', fail_on_nan_loss=False)])
  assert int(est.get_variable_value('global_step')) == 6  # TF: stops after the NaN step


def test_final_ops_hook_and_checkpoint_saver_hook(data, tmp_path):
  x, y = data
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'm'))
  losses = []

  class Losses(je.hooks.Hook):
    def before_step(self, ctx):
      return ['loss']

    def after_step(self, ctx, values):
      losses.append(float(values['loss']))

  final = je.FinalOpsHook({'last_loss': 'loss'})
  unknown_length = je.FinalOpsHook(['loss'])
  est.train(_fn(x, y), hooks=[Losses(), final], max_steps=4)
  assert final.final_ops_values['last_loss'] == pytest.approx(losses[-1])
  est.train(_fn(x, y, 1), hooks=[unknown_length])
  assert isinstance(unknown_length.final_ops_values, list)
  with pytest.raises(TypeError, match='save_checkpoints_steps'):
    je.CheckpointSaverHook(str(tmp_path), save_steps=10)


def test_add_metrics(data, tmp_path):
  x, y = data
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'm'))
  est.train(_fn(x, y), max_steps=5)

  def metric_fn(labels, predictions, features):
    return {'mean_label': je.metrics.mean(labels),
            'mean_prob': je.metrics.mean(features['x'][:, 0] * 0 + 7.0)}  # replaces the model's

  with_metrics = je.add_metrics(est, metric_fn)
  before = est.evaluate(_fn(x, y, 1))
  after = with_metrics.evaluate(_fn(x, y, 1))
  assert after['mean_label'] == pytest.approx(float(np.mean(y)))
  assert after['mean_prob'] == pytest.approx(7.0)
  assert after['accuracy'] == pytest.approx(before['accuracy'])
  assert after['global_step'] == 5 and with_metrics.model_dir == est.model_dir
  with pytest.raises(ValueError, match='metric_fn may take only'):
    je.add_metrics(est, lambda labels, mode: {})


def test_experimental_namespace():
  assert je.experimental.stop_if_no_decrease_hook is je.stop_if_no_decrease_hook
  assert je.experimental.make_early_stopping_hook is je.make_early_stopping_hook
  with pytest.raises(TypeError, match='train_and_evaluate'):
    je.experimental.InMemoryEvaluatorHook(None, None)
  with pytest.raises(TypeError, match='flax.linen.RNN'):
    je.experimental.RNNClassifier()
