"""`run_evaluator`: a standalone evaluator that watches `model_dir` (TF's `evaluator` task).

A training job (`Estimator.train` or `train_and_evaluate`) writes checkpoints; this job evaluates
each new complete one once, runs the exporters, and exits after the checkpoint at `max_steps`.
Which checkpoints it has evaluated is kept in `eval_dir/evaluator_state.json`, so an evaluator
restarted after a crash or preemption resumes with the next checkpoint, never evaluating one twice
(a checkpoint whose evaluation was cut short is evaluated again).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import jax

from jestimator.state import checkpoints as ckpt_lib
from jestimator.distributed.training import EvalSpec, _Evaluator, check_exporters
from jestimator.driver.estimator import Estimator
from jestimator.driver.summaries import read_eval_results

logger = logging.getLogger('jestimator')

STATE_FILE = 'evaluator_state.json'


def run_evaluator(estimator: Estimator, eval_spec: EvalSpec, max_steps: int,
                  poll_secs: float = 5.0, timeout_secs: float | None = 3600.0,
                  latest_only: bool = False) -> tuple[dict[str, Any] | None, list[str]]:
  """Evaluates each new checkpoint in `estimator.model_dir` until one at `>= max_steps`.

  Waits `eval_spec.start_delay_secs` before the first evaluation (not when resuming), then
  evaluates new checkpoints in step order (not the initial one at step 0), each once, starting
  evaluations at least `eval_spec.throttle_secs` apart, and runs `eval_spec.exporters` after each
  (with `is_the_final_export` for the checkpoint at `>= max_steps`). Results go to
  `estimator.eval_dir(eval_spec.name)`, as `evaluate` writes them (early stopping hooks of the
  trainer read them there).

  Run it in its own process (one process: it raises in a multi-process run), on the same
  `model_fn`/canned estimator and `model_dir` as the trainer.

  Args:
    estimator: the `Estimator` whose `model_dir` to watch.
    eval_spec: an `EvalSpec` (`every_n_steps` does not apply: the trainer's checkpoints decide).
    max_steps: the trainer's `max_steps`: exit after evaluating a checkpoint at or past it.
    poll_secs: how often to look for new checkpoints.
    timeout_secs: raise `TimeoutError` when no new checkpoint appears for this long (a dead
      trainer must not leave the evaluator waiting forever); None waits forever.
    latest_only: evaluate only the newest of several new checkpoints (TF's evaluator; keeps up
      with a trainer that saves faster than evaluations run). Default: every one, oldest first.

  Returns:
    `(metrics of the last evaluation, [paths of the exports made by this call])`.

  Raises:
    TimeoutError: no new checkpoint for `timeout_secs`.

  Example:
    # evaluator.py, started next to the trainer with the same model_dir:
    run_evaluator(est, EvalSpec(eval_input_fn, steps=None, start_delay_secs=0, throttle_secs=60,
                                exporters=[BestExporter(serving_input_fn=fn)]), max_steps=10_000)
  """
  _validate(estimator, eval_spec, max_steps, poll_secs, timeout_secs)
  check_exporters(estimator, eval_spec.exporters)
  evaluator = _Evaluator(estimator, eval_spec, max_steps)
  eval_dir = estimator.eval_dir(eval_spec.name)
  state_file = os.path.join(eval_dir, STATE_FILE)
  done = _read_state(state_file)
  last = max(done) if done else None
  if last is not None and last >= max_steps:
    logger.info('The evaluator has evaluated step %d >= max_steps=%d already', last, max_steps)
    evaluator.metrics = read_eval_results(eval_dir).get(last)
    return evaluator.metrics, []
  if last is None and eval_spec.start_delay_secs:
    logger.info('Waiting %g s (start_delay_secs) before the first evaluation',
                eval_spec.start_delay_secs)
    time.sleep(eval_spec.start_delay_secs)
  if last is not None:
    logger.info('Resuming the evaluator after step %d', last)
  waiting_since = time.monotonic()
  previous_start = None
  while True:
    ckpt = ckpt_lib.Checkpointer(estimator.model_dir, read_only=True)
    # Step 0 is the checkpoint `train` writes when it starts (TF's CheckpointSaverHook): nothing
    # trained yet, so not evaluated, as `train_and_evaluate` (TF's local mode) skips it too.
    new = [s for s in ckpt.all_steps() if s > 0 and (last is None or s > last)]
    if not new:
      if timeout_secs is not None and time.monotonic() - waiting_since > timeout_secs:
        raise TimeoutError(
            f'run_evaluator: no new checkpoint in {estimator.model_dir!r} for {timeout_secs:g} s '
            f'(last evaluated: {last}, waiting for max_steps={max_steps}); is the trainer '
            'running?')
      time.sleep(poll_secs)
      continue
    if latest_only and len(new) > 1:
      logger.info('Skipping checkpoints %s: evaluating the newest, %d', new[:-1], new[-1])
      new = new[-1:]
    for step in new:
      if previous_start is not None:  # throttle_secs between the starts of two evaluations
        time.sleep(max(0.0, eval_spec.throttle_secs - (time.monotonic() - previous_start)))
      previous_start = time.monotonic()
      path = ckpt.path(step)
      if not _evaluate(evaluator, ckpt, step, path):
        continue
      evaluator.export(path, step >= max_steps)
      done.append(step)
      last = step
      _write_state(state_file, done)
      if step >= max_steps:
        return evaluator.metrics, list(evaluator.export_results)
    waiting_since = time.monotonic()


def _evaluate(evaluator: _Evaluator, ckpt, step: int, path: str) -> bool:
  """Evaluates checkpoint `step`; False when the trainer deleted it first (keep_checkpoint_max)."""
  try:
    evaluator.evaluate(path)
  except (FileNotFoundError, ValueError, OSError):
    if step in ckpt.all_steps():
      raise
    logger.warning('Checkpoint %s was deleted before it could be evaluated; skipping it', path)
    return False
  return True


def _validate(estimator, eval_spec, max_steps, poll_secs, timeout_secs) -> None:
  if not isinstance(estimator, Estimator):
    raise TypeError(f'estimator must be a jestimator.Estimator, got {type(estimator).__name__}')
  if not isinstance(eval_spec, EvalSpec):
    raise TypeError(f'eval_spec must be an EvalSpec, got {type(eval_spec).__name__}')
  if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= 0:
    raise ValueError(f'max_steps must be a positive integer, got {max_steps!r}')
  for name, value in (('poll_secs', poll_secs), ('timeout_secs', timeout_secs)):
    if value is None and name == 'timeout_secs':
      continue
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
      raise ValueError(f'{name} must be a number > 0, got {value!r}')
  if jax.process_count() > 1:
    raise ValueError(f'run_evaluator runs in a single process, but this run has '
                     f'{jax.process_count()}; start the evaluator as its own job')


def _read_state(path: str) -> list[int]:
  if not os.path.isfile(path):
    return []
  try:
    with open(path) as f:
      return sorted(int(s) for s in json.load(f)['evaluated_steps'])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'{path} is not a valid evaluator state ({e}); delete it to evaluate every '
                     'checkpoint again') from None


def _write_state(path: str, steps: list[int]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump({'evaluated_steps': sorted(steps)}, f)
  os.replace(tmp, path)  # atomic: a crash leaves the old state or the new one


__all__ = ['STATE_FILE', 'run_evaluator']
