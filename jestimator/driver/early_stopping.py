"""Early stopping over evaluation results (TF's `tf.estimator.experimental.stop_if_*` hooks).

Every `Estimator.evaluate` appends its metrics to `eval_dir/eval_results.jsonl`; these hooks read
that file (not TensorBoard event files, so no TensorFlow is needed) at their cadence and stop
training when the rule says so. `min_delta` (missing in TF) ignores improvements smaller than it.
"""
from __future__ import annotations

import operator
import time
from typing import Callable

from jestimator.driver.hooks import Hook, StepContext
from jestimator.driver.summaries import read_eval_results


class _EarlyStoppingHook(Hook):

  def __init__(self, should_stop_fn: Callable[[], bool], run_every_secs: float | None,
               run_every_steps: int | None):
    self.should_stop_fn = should_stop_fn
    self.run_every_secs, self.run_every_steps = run_every_secs, run_every_steps
    self._last_time = None

  def _due(self, ctx: StepContext) -> bool:
    if self.run_every_steps is not None:
      return ctx.crossed(self.run_every_steps)
    now = time.monotonic()
    if self._last_time is None or now - self._last_time >= (self.run_every_secs or 0):
      self._last_time = now
      return True
    return False

  def after_step(self, ctx, values):
    if self._due(ctx) and self.should_stop_fn():
      ctx.request_stop()


def make_early_stopping_hook(estimator, should_stop_fn: Callable[[], bool],
                             run_every_secs: float | None = 60,
                             run_every_steps: int | None = None) -> Hook:
  """A hook that stops training when `should_stop_fn()` returns True, checked at the cadence."""
  del estimator
  if run_every_steps is not None:
    run_every_secs = None
  return _EarlyStoppingHook(should_stop_fn, run_every_secs, run_every_steps)


def _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs, run_every_steps,
                 decide: Callable[[list[tuple[int, float]]], bool]) -> Hook:
  eval_dir = eval_dir or estimator.eval_dir()

  def should_stop() -> bool:
    results = read_eval_results(eval_dir)
    series = [(step, float(m[metric_name])) for step, m in sorted(results.items())
              if metric_name in m]
    if not series or series[-1][0] < min_steps:
      return False
    return decide(series)

  return make_early_stopping_hook(estimator, should_stop, run_every_secs, run_every_steps)


def stop_if_higher_hook(estimator, metric_name: str, threshold: float, eval_dir: str | None = None,
                        min_steps: int = 0, run_every_secs: float | None = 60,
                        run_every_steps: int | None = None) -> Hook:
  """Stops once the latest evaluation's `metric_name` is above `threshold`."""
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, lambda s: s[-1][1] > threshold)


def stop_if_lower_hook(estimator, metric_name: str, threshold: float, eval_dir: str | None = None,
                       min_steps: int = 0, run_every_secs: float | None = 60,
                       run_every_steps: int | None = None) -> Hook:
  """Stops once the latest evaluation's `metric_name` is below `threshold`."""
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, lambda s: s[-1][1] < threshold)


def _no_improvement(max_steps: int, better: Callable[[float, float], bool], min_delta: float):
  def decide(series: list[tuple[int, float]]) -> bool:
    best_step, best = series[0]
    for step, value in series[1:]:
      if better(value, best, min_delta):
        best_step, best = step, value
    return series[-1][0] - best_step >= max_steps
  return decide


def stop_if_no_increase_hook(estimator, metric_name: str, max_steps_without_increase: int,
                             eval_dir: str | None = None, min_steps: int = 0,
                             run_every_secs: float | None = 60, run_every_steps: int | None = None,
                             min_delta: float = 0.0) -> Hook:
  """Stops when `metric_name` has not increased by more than `min_delta` for that many steps."""
  better = lambda v, best, d: operator.gt(v, best + d)
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, _no_improvement(max_steps_without_increase, better,
                                                       min_delta))


def stop_if_no_decrease_hook(estimator, metric_name: str, max_steps_without_decrease: int,
                             eval_dir: str | None = None, min_steps: int = 0,
                             run_every_secs: float | None = 60, run_every_steps: int | None = None,
                             min_delta: float = 0.0) -> Hook:
  """Stops when `metric_name` has not decreased by more than `min_delta` for that many steps."""
  better = lambda v, best, d: operator.lt(v, best - d)
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, _no_improvement(max_steps_without_decrease, better,
                                                       min_delta))
