"""The Estimator side of a case: train / evaluate / predict / checkpoint through the public API.

Data enters as a user's would: `numpy_input_fn` over the raw arrays (shuffled, repeated forever),
feature columns (if any) transformed by the Estimator. Timing uses a hook that fetches `loss` only
at the plan's sync points, so the loop runs as asynchronously as it does for a user.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any, Sequence

import jestimator as je
from jestimator import checkpoints
from jestimator.hooks import CheckpointSaverListener

from benchmarks.workloads import _measure


class _ClockHook(je.hooks.Hook):
  """Fetches `loss` at the clock's sync points, records them, stops when the plan is done."""

  def __init__(self, clock: _measure.Clock):
    self.clock, self.i, self._sync = clock, 0, False

  def before_step(self, ctx):
    self.i += 1
    self._sync = self.clock.sync_now(self.i)
    return ['loss'] if self._sync else None

  def after_step(self, ctx, values):
    if self._sync:
      self.clock.record(self.i)
    if self.clock.done(self.i):
      ctx.request_stop()


class _SaveTimer(CheckpointSaverListener):
  """Wall time of the last checkpoint save (device -> host copy and the Orbax write, completed)."""

  def __init__(self):
    self.seconds = None
    self._t = None

  def before_save(self, step):
    self._t = time.perf_counter()

  def after_save(self, step):
    # The loop waits for the write to finish before calling listeners.
    self.seconds = time.perf_counter() - self._t


def run(task, batch_size: int, plan: _measure.Plan, steps_per_loop: int = 1, strategy: Any = None,
        devices: Sequence[Any] | None = None) -> dict[str, Any]:
  """Trains `plan.dispatches * steps_per_loop` steps, then evaluates, predicts, restores."""
  _measure.reset_peak_rss()
  model_dir = tempfile.mkdtemp(prefix='bench_est_')
  try:
    config = je.RunConfig(model_dir=model_dir, seed=0, steps_per_loop=steps_per_loop,
                          strategy=strategy, save_checkpoints_steps=10**9,
                          save_summary_steps=10**9, log_step_count_steps=10**9,
                          keep_checkpoint_max=1)
    clock = _measure.Clock(plan=plan)
    hook, saver = _ClockHook(clock), _SaveTimer()
    train_fn = je.inputs.numpy_input_fn(task.train_x, task.train_y, batch_size=batch_size,
                                        num_epochs=None, shuffle=True, seed=0)
    with _measure.CompileTimer() as compile_timer:
      clock.start()
      est = task.make_estimator(config)
      est.train(train_fn, hooks=[hook], max_steps=plan.dispatches * steps_per_loop,
                saving_listeners=[saver])
    if not clock.done(hook.i):
      raise RuntimeError(f'training stopped after {hook.i} of {plan.dispatches} dispatches')
    result = clock.summary(batch_size * steps_per_loop, steps_per_loop)
    result['compile_s'] = compile_timer.seconds

    n_eval = len(next(iter(task.eval_x.values())))
    eval_fn = je.inputs.numpy_input_fn(task.eval_x, task.eval_y, batch_size=batch_size,
                                       num_epochs=1, shuffle=False)
    est.evaluate(eval_fn)  # compiles; the second call is the steady one
    t = time.perf_counter()
    metrics = est.evaluate(eval_fn)
    result['eval_examples_per_sec'] = n_eval / (time.perf_counter() - t)
    predict_fn = je.inputs.numpy_input_fn(task.eval_x, batch_size=batch_size, num_epochs=1,
                                          shuffle=False)
    for _ in est.predict(predict_fn, yield_single_examples=False):
      pass
    t = time.perf_counter()
    for _ in est.predict(predict_fn, yield_single_examples=False):
      pass
    result['predict_examples_per_sec'] = n_eval / (time.perf_counter() - t)
    result['quality'] = {name: _float(metrics.get(key)) for name, key in task.metric_keys.items()}

    ckpt = checkpoints.Checkpointer(model_dir, read_only=True)
    step = ckpt.latest_step()
    if step != result['train_steps']:  # the figures assume every dispatch ran all its steps
      raise RuntimeError(f'the Estimator trained {step} steps; the plan needed '
                         f'{result["train_steps"]}')
    t = time.perf_counter()
    ckpt.restore_raw_variables(step)
    result['checkpoint_restore_s'] = time.perf_counter() - t
    result['checkpoint_mib'] = _measure.dir_mib(ckpt.path(step))
    result['checkpoint_save_s'] = saver.seconds
    result.update(batch_size=batch_size, steps_per_loop=steps_per_loop,
                  devices=len(devices) if devices else 1,
                  peak_host_rss_mib=_measure.peak_rss_mib(),
                  peak_device_mib=_measure.peak_device_mib(devices))
    return result
  finally:
    shutil.rmtree(model_dir, ignore_errors=True)


def _float(value):
  return None if value is None else float(value)
