"""Early stopping over evaluation results (TF's `tf.estimator.experimental.stop_if_*` hooks).

Every `Estimator.evaluate` appends its metrics to `eval_dir/eval_results.jsonl`; these hooks read
that file (not TensorBoard event files, so no TensorFlow is needed) at their cadence and stop
training when the rule says so. `min_delta` (missing in TF) ignores improvements smaller than it.

The rules are TF's (`early_stopping.py`), applied to the whole history in step order, so a
restart, or evaluations written by another process, decide as a single uninterrupted run would:
evaluations at steps below `min_steps` are ignored entirely; a threshold hook stops if any
remaining evaluation crossed the threshold; a no-improvement hook stops if at any point the steps
since the best value so far reached the limit.
"""
from __future__ import annotations

import operator
import time
from typing import Callable

from jestimator.driver.estimator import Estimator
from jestimator.driver.hooks import Hook, StepContext
from jestimator.driver.summaries import read_eval_results

Series = list[tuple[int, float]]  # (global step, metric value) in step order


class _Every60Secs:
  """`run_every_secs`' default: 60 s, or off when `run_every_steps` is given. (TF's default is a
  plain 60, so there `run_every_steps=N` alone raises; here it means "every N steps".)"""

  def __repr__(self):
    return '<60 unless run_every_steps is set>'


_EVERY_60_SECS = _Every60Secs()


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
                             run_every_secs: float | None = _EVERY_60_SECS,
                             run_every_steps: int | None = None) -> Hook:
  """A hook that stops training when `should_stop_fn()` returns True, checked at the cadence.

  Raises:
    TypeError: `estimator` is not a `jestimator.Estimator`, or `should_stop_fn` not callable.
    ValueError: both `run_every_secs` and `run_every_steps` are set (as TF).
  """
  if not callable(should_stop_fn):
    raise TypeError(f'`should_stop_fn` must be callable, got {type(should_stop_fn).__name__}')
  run_every_secs = _check(estimator, run_every_secs, run_every_steps)
  return _EarlyStoppingHook(should_stop_fn, run_every_secs, run_every_steps)


def _check(estimator, run_every_secs, run_every_steps) -> float | None:
  """TF's argument checks (its error types); returns `run_every_secs` with the default resolved."""
  if not isinstance(estimator, Estimator):
    raise TypeError(f'`estimator` must have type `jestimator.Estimator`. Got: {type(estimator)}')
  if run_every_secs is _EVERY_60_SECS:
    run_every_secs = None if run_every_steps is not None else 60
  elif run_every_secs is not None and run_every_steps is not None:
    raise ValueError('Only one of `run_every_secs` and `run_every_steps` must be set; got '
                     f'run_every_secs={run_every_secs!r}, run_every_steps={run_every_steps!r}')
  return run_every_secs


def _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs, run_every_steps,
                 decide: Callable[[Series], bool]) -> Hook:
  _check(estimator, run_every_secs, run_every_steps)  # before `estimator.eval_dir()` is used
  eval_dir = eval_dir or estimator.eval_dir()

  def should_stop() -> bool:
    results = read_eval_results(eval_dir)
    # TF skips evaluations before min_steps entirely (they are neither a crossing nor a best).
    series = [(step, float(m[metric_name])) for step, m in sorted(results.items())
              if metric_name in m and step >= min_steps]
    return bool(series) and decide(series)

  return make_early_stopping_hook(estimator, should_stop, run_every_secs, run_every_steps)


def stop_if_higher_hook(estimator, metric_name: str, threshold: float, eval_dir: str | None = None,
                        min_steps: int = 0, run_every_secs: float | None = _EVERY_60_SECS,
                        run_every_steps: int | None = None) -> Hook:
  """Stops once an evaluation at a step >= `min_steps` has `metric_name` above `threshold`."""
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, lambda s: any(v > threshold for _, v in s))


def stop_if_lower_hook(estimator, metric_name: str, threshold: float, eval_dir: str | None = None,
                       min_steps: int = 0, run_every_secs: float | None = _EVERY_60_SECS,
                       run_every_steps: int | None = None) -> Hook:
  """Stops once an evaluation at a step >= `min_steps` has `metric_name` below `threshold`."""
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, lambda s: any(v < threshold for _, v in s))


def _no_improvement(max_steps: int, better: Callable[[float, float, float], bool],
                    min_delta: float) -> Callable[[Series], bool]:
  def decide(series: Series) -> bool:
    best_step, best = series[0]
    for step, value in series:  # TF checks the gap after every evaluation, not only the newest
      if better(value, best, min_delta):
        best_step, best = step, value
      if step - best_step >= max_steps:
        return True
    return False
  return decide


def stop_if_no_increase_hook(estimator, metric_name: str, max_steps_without_increase: int,
                             eval_dir: str | None = None, min_steps: int = 0,
                             run_every_secs: float | None = _EVERY_60_SECS,
                             run_every_steps: int | None = None,
                             min_delta: float = 0.0) -> Hook:
  """Stops when `metric_name` has not increased by more than `min_delta` for that many steps."""
  better = lambda v, best, d: operator.gt(v, best + d)
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, _no_improvement(max_steps_without_increase, better,
                                                       min_delta))


def stop_if_no_decrease_hook(estimator, metric_name: str, max_steps_without_decrease: int,
                             eval_dir: str | None = None, min_steps: int = 0,
                             run_every_secs: float | None = _EVERY_60_SECS,
                             run_every_steps: int | None = None,
                             min_delta: float = 0.0) -> Hook:
  """Stops when `metric_name` has not decreased by more than `min_delta` for that many steps."""
  better = lambda v, best, d: operator.lt(v, best - d)
  return _metric_hook(estimator, metric_name, eval_dir, min_steps, run_every_secs,
                      run_every_steps, _no_improvement(max_steps_without_decrease, better,
                                                       min_delta))
