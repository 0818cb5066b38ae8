"""`train_and_evaluate` with `TrainSpec` / `EvalSpec` (TF's `tf.estimator.train_and_evaluate`).

Local mode, as TF's: one `estimator.train(max_steps=...)` call whose saving listener evaluates
after each checkpoint save (not sooner than `throttle_secs` after the previous evaluation), once
more at the end if the last step was not evaluated, and runs the exporters after each evaluation.
The evaluations reuse the estimator's compiled eval step and the train state in memory, so nothing
is rebuilt or reloaded between them (TF's pain points 1-3).

`EvalSpec(every_n_steps=N)` evaluates every N steps instead, whatever the checkpoint cadence: the
listener asks the train loop for a checkpoint at each multiple of N (an extra save, which counts
towards `keep_checkpoint_max`), and evaluates only those (and the end); `throttle_secs` does not
apply.

A separate evaluator process can watch `model_dir` instead: see `run_evaluator`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jestimator.driver.agreement import Agreement
from jestimator.driver.estimator import Estimator
from jestimator.driver.hooks import CheckpointSaverListener, Hook
from jestimator.model.errors import WrongTypeError

logger = logging.getLogger('jestimator')


def _positive_int(name: str, value: Any, allow_none: bool = True) -> int | None:
  if value is None and allow_none:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f'{name} must be a positive integer{" or None" if allow_none else ""}, '
                     f'got {value!r}')
  return int(value)


def _non_negative(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or (
      value < 0):
    raise ValueError(f'{name} must be a number >= 0, got {value!r}')
  return float(value)


def _hooks(name: str, hooks: Any) -> tuple[Hook, ...]:
  hooks = tuple(hooks or ())
  for h in hooks:
    if not isinstance(h, Hook):
      raise TypeError(f'{name} must be jestimator.hooks.Hook instances, got {type(h).__name__}')
  return hooks


def _input_fn(owner: str, input_fn: Any) -> Callable:
  if not callable(input_fn):
    raise TypeError(f'{owner}.input_fn must be callable, got {type(input_fn).__name__}')
  return input_fn


@dataclasses.dataclass(frozen=True, init=False)
class TrainSpec:
  """What `train_and_evaluate` trains on.

  Args:
    input_fn: the training `input_fn`, as for `Estimator.train`.
    max_steps: train until this global step; None trains until the input ends (or a hook stops).
    hooks: `jestimator.hooks.Hook`s for training (early stopping hooks go here).
    saving_listeners: extra `CheckpointSaverListener`s, called before the evaluation listener.

  Example:
    TrainSpec(numpy_input_fn({'x': x}, y, num_epochs=None, shuffle=True), max_steps=10_000)
  """
  input_fn: Callable
  max_steps: int | None
  hooks: tuple[Hook, ...]
  saving_listeners: tuple[CheckpointSaverListener, ...]

  def __init__(self, input_fn: Callable, max_steps: int | None = None,
               hooks: Sequence[Hook] | None = None,
               saving_listeners: Sequence[CheckpointSaverListener] | None = None):
    listeners = tuple(saving_listeners or ())
    for listener in listeners:
      if not isinstance(listener, CheckpointSaverListener):
        raise TypeError('TrainSpec.saving_listeners must be jestimator.hooks.'
                        f'CheckpointSaverListener instances, got {type(listener).__name__}')
    set_ = lambda k, v: object.__setattr__(self, k, v)
    set_('input_fn', _input_fn('TrainSpec', input_fn))
    set_('max_steps', _positive_int('TrainSpec.max_steps', max_steps))
    set_('hooks', _hooks('TrainSpec.hooks', hooks))
    set_('saving_listeners', listeners)


@dataclasses.dataclass(frozen=True, init=False)
class EvalSpec:
  """How and when `train_and_evaluate` (or `run_evaluator`) evaluates and exports.

  Args:
    input_fn: the evaluation `input_fn`, as for `Estimator.evaluate`.
    steps: batches per evaluation; None reads the input to its end. Defaults to 100 as TF's (not
      to the end, unlike `evaluate(steps=None)`).
    name: evaluation name: results go to `model_dir/eval_<name>` (`model_dir/eval` for None).
    hooks: `Hook`s for the evaluation loop.
    exporters: an `Exporter` or a list of them (anything with a `name` and
      `export(estimator, export_path, checkpoint_path, eval_result, is_the_final_export)`), run
      after every evaluation into `model_dir/export/<name>/`; names must be unique.
    start_delay_secs: `run_evaluator` waits this long before its first evaluation; unused by
      local `train_and_evaluate` (as in TF).
    throttle_secs: do not evaluate a checkpoint saved sooner than this after the previous
      evaluation (0: evaluate every save). For `run_evaluator`, the least time between the starts
      of two evaluations.
    every_n_steps: evaluate every N global steps whatever the checkpoint cadence (see module
      docstring); None evaluates on checkpoint saves.

  Example:
    EvalSpec(eval_input_fn, steps=None, throttle_secs=0,
             exporters=[jestimator.export.LatestExporter('latest', exports_to_keep=3)])
  """
  input_fn: Callable
  steps: int | None
  name: str | None
  hooks: tuple[Hook, ...]
  exporters: tuple[Any, ...]
  start_delay_secs: float
  throttle_secs: float
  every_n_steps: int | None

  def __init__(self, input_fn: Callable, steps: int | None = 100, name: str | None = None,
               hooks: Sequence[Hook] | None = None, exporters: Any = None,
               start_delay_secs: float = 120, throttle_secs: float = 600,
               every_n_steps: int | None = None):
    if name is not None and not isinstance(name, str):
      # TF raises TypeError here (the natural class); ValueError, what this raised before, too.
      raise WrongTypeError(f'`name` must be string, given: {name!r} (EvalSpec.name)')
    if name is not None and (not name or os.sep in name):
      raise ValueError(f'EvalSpec.name must be None or a non-empty folder name, got {name!r}')
    set_ = lambda k, v: object.__setattr__(self, k, v)
    set_('input_fn', _input_fn('EvalSpec', input_fn))
    set_('steps', _positive_int('EvalSpec.steps', steps))
    set_('name', name)
    set_('hooks', _hooks('EvalSpec.hooks', hooks))
    set_('exporters', _check_exporters(exporters))
    set_('start_delay_secs', _non_negative('EvalSpec.start_delay_secs', start_delay_secs))
    set_('throttle_secs', _non_negative('EvalSpec.throttle_secs', throttle_secs))
    set_('every_n_steps', _positive_int('EvalSpec.every_n_steps', every_n_steps))


def _check_exporters(exporters: Any) -> tuple[Any, ...]:
  if exporters is None:
    return ()
  if not isinstance(exporters, (list, tuple)):
    exporters = (exporters,)
  names = set()
  for e in exporters:
    name = getattr(e, 'name', None)
    if not callable(getattr(e, 'export', None)):
      raise TypeError('EvalSpec.exporters must be jestimator.export.Exporter instances (a '
                      f'`name` string and an `export` method), got {type(e).__name__}')
    if not isinstance(name, str) or not name:
      # TF raises ValueError for a None, empty or non-string name; TypeError is natural too.
      raise WrongTypeError('An Exporter cannot have a name that is `None` or empty, or not a '
                           f'string: {type(e).__name__}.name is {name!r} (EvalSpec.exporters)')
    if name in names:
      raise ValueError(f'EvalSpec.exporters must have unique names; {name!r} appears twice')
    names.add(name)
  return tuple(exporters)


def check_exporters(estimator: Estimator, exporters) -> None:
  """Runs each exporter's `check(estimator)` (when it has one), so an exporter that cannot export
  this model (say a column with a Python `normalizer_fn`) fails before training, not after the
  first evaluation."""
  for exporter in exporters:
    check = getattr(exporter, 'check', None)
    if callable(check):
      check(estimator)


class _Evaluator:
  """Evaluates, then exports; remembers what it did. Shared with `run_evaluator`.

  In multi-process runs every process evaluates (a collective) and runs the exporters (an export
  restores the checkpoint, which Orbax does with a barrier across processes), but only process 0
  exports into `model_dir/export/`: the others write into a private scratch folder, deleted by
  `close()`, so the model is exported once.
  """

  def __init__(self, est: Estimator, eval_spec: EvalSpec, max_steps: int | None):
    self.est, self.spec, self.max_steps = est, eval_spec, max_steps
    self.metrics: dict[str, Any] | None = None
    self.export_results: list[str] = []
    self.evaluated_step: int | None = None
    self.final_done = False
    self._exported: dict[str, int] = {}   # exporter name -> step it last exported
    self._export_root = os.path.join(est.model_dir, 'export')
    self._scratch = None
    if jax.process_index() != 0 and eval_spec.exporters:
      self._scratch = tempfile.mkdtemp(prefix=f'jestimator_export_p{jax.process_index()}_')
      _seed_scratch(self._export_root, self._scratch, eval_spec.exporters)
      self._export_root = self._scratch

  def evaluate(self, checkpoint_path: str | None = None) -> dict[str, Any]:
    spec = self.spec
    self.metrics = self.est.evaluate(spec.input_fn, steps=spec.steps, hooks=spec.hooks,
                                     checkpoint_path=checkpoint_path, name=spec.name)
    self.evaluated_step = int(self.metrics['global_step'])
    return self.metrics

  def is_final(self, step: int) -> bool:
    return self.max_steps is not None and step >= self.max_steps

  def export(self, checkpoint_path: str, is_final: bool, only_missing: bool = False) -> None:
    """Runs the exporters on the last evaluation (`only_missing`: those that skipped it)."""
    step = self.evaluated_step
    for exporter in self.spec.exporters:
      if only_missing and self._exported.get(exporter.name) == step:
        continue
      path = exporter.export(self.est, os.path.join(self._export_root, exporter.name),
                             checkpoint_path, self.metrics, is_final)
      if path is not None:
        self._exported[exporter.name] = step
        if self._scratch is None:
          self.export_results.append(path)  # the export itself logged where it went
    self.final_done |= is_final

  def close(self) -> None:
    if self._scratch is not None:
      shutil.rmtree(self._scratch, ignore_errors=True)


def _seed_scratch(export_root: str, scratch: str, exporters) -> None:
  """Copies process 0's BestExporter records, so every process takes the same decisions."""
  from jestimator.export.exporters import BEST_RESULT_FILE
  for e in exporters:
    src = os.path.join(export_root, e.name, BEST_RESULT_FILE)
    if os.path.isfile(src):
      os.makedirs(os.path.join(scratch, e.name), exist_ok=True)
      shutil.copyfile(src, os.path.join(scratch, e.name, BEST_RESULT_FILE))


class _EvalListener(CheckpointSaverListener):
  """Evaluates after checkpoint saves (throttled) or every N steps, and at the end."""

  def __init__(self, evaluator: _Evaluator):
    self.ev = evaluator
    spec = evaluator.spec
    self.every_n, self.throttle = spec.every_n_steps, spec.throttle_secs
    self._last_eval_time: float | None = None
    self._crossed_step: int | None = None
    self.began = False
    self._stepped = False  # whether a dispatch ran in this train() (see after_save)

  def begin(self):
    self.began = True
    self._stepped = False

  def wants_save(self, ctx) -> bool:  # called by the train loop after every dispatch
    self._stepped = True
    if self.every_n is not None and ctx.crossed(self.every_n):
      self._crossed_step = ctx.step
      return True
    return False

  def after_save(self, step: int) -> bool:
    if not self._stepped:
      # The save when training starts (step 0, or the step it resumed from): nothing trained
      # since, so nothing to evaluate; TF's listener skips its first save likewise.
      return False
    if self.every_n is not None:
      if step != self._crossed_step:  # a save of the checkpoint cadence, not an evaluation point
        return False
    else:
      due = (self._last_eval_time is None or
             time.monotonic() - self._last_eval_time >= self.throttle)
      (due,) = Agreement.of_this_run().any(due)  # a clock decision: every process takes it
      if not due:
        logger.info('Skipping evaluation of step %d: less than throttle_secs=%g since the last',
                    step, self.throttle)
        return False
    self._evaluate(step, self.ev.is_final(step))
    return False

  def end(self, step: int) -> None:
    ev = self.ev
    if ev.evaluated_step != step:
      self._evaluate(step, True)
    elif not ev.final_done:
      # Training ended before max_steps (a hook's stop, or the input's end) on a step that was
      # evaluated already: exporters that skipped it (FinalExporter) now see the final export.
      ev.export(_checkpoint_path(ev.est, step), True, only_missing=True)

  def _evaluate(self, step: int, is_final: bool) -> None:
    self._last_eval_time = time.monotonic()
    self.ev.evaluate()
    self.ev.export(_checkpoint_path(self.ev.est, step), is_final)


def _checkpoint_path(est: Estimator, step: int) -> str:
  return os.path.join(os.path.abspath(est.model_dir), str(step))


def train_and_evaluate(estimator: Estimator, train_spec: TrainSpec, eval_spec: EvalSpec
                       ) -> tuple[dict[str, Any] | None, list[str]]:
  """Trains, evaluating and exporting along the way; TF's local `train_and_evaluate`.

  Evaluation points: after each checkpoint save (`RunConfig.save_checkpoints_steps/secs`) that
  comes `throttle_secs` or more after the previous evaluation (the first always does; the save
  at step 0 never does), and after training ends if its last step was not evaluated. With
  `save_checkpoints_steps=3`, `max_steps=10`, `throttle_secs=0`: steps 3, 6, 9, 10.
  `EvalSpec(every_n_steps=N)`: every N steps and at the end instead.

  Exporters run after every evaluation with `is_the_final_export` True when the step reached
  `max_steps`; when training ends before (early stopping, end of input), exporters that did not
  export the last checkpoint (say a `FinalExporter`) are called once more with it True. (TF never
  runs a FinalExporter then.)

  Early stopping: pass e.g. `stop_if_no_decrease_hook(est, 'loss', 1000, run_every_steps=...)`
  in `train_spec.hooks`; it reads the evaluations written here. In multi-process runs every
  process must call this function; stops and evaluations are agreed across processes, and only
  process 0 writes evaluation records and exports.

  Args:
    estimator: a `jestimator.Estimator` (canned ones included).
    train_spec: a `TrainSpec`.
    eval_spec: an `EvalSpec`.

  Returns:
    `(metrics of the last evaluation, [paths of the exports made])`; the list is empty on
    processes other than 0. If `max_steps` was reached already, nothing trains: the latest
    checkpoint is evaluated (no exports) so the metrics are still returned.

  Example:
    metrics, exports = train_and_evaluate(
        est, TrainSpec(train_input_fn, max_steps=10_000),
        EvalSpec(eval_input_fn, steps=None, throttle_secs=60,
                 exporters=jestimator.export.BestExporter(serving_input_fn=serving_fn)))
  """
  if not isinstance(estimator, Estimator):
    raise TypeError(f'estimator must be a jestimator.Estimator, got {type(estimator).__name__}')
  if not isinstance(train_spec, TrainSpec):
    raise TypeError(f'train_spec must be a TrainSpec, got {type(train_spec).__name__}')
  if not isinstance(eval_spec, EvalSpec):
    raise TypeError(f'eval_spec must be an EvalSpec, got {type(eval_spec).__name__}')
  check_exporters(estimator, eval_spec.exporters)
  evaluator = _Evaluator(estimator, eval_spec, train_spec.max_steps)
  listener = _EvalListener(evaluator)
  try:
    estimator.train(train_spec.input_fn, hooks=train_spec.hooks, max_steps=train_spec.max_steps,
                    saving_listeners=list(train_spec.saving_listeners) + [listener])
    if not listener.began and estimator.latest_checkpoint() is not None:
      logger.info('max_steps=%s was reached already: evaluating the latest checkpoint without '
                  'exporting', train_spec.max_steps)
      evaluator.evaluate()
  finally:
    evaluator.close()
  return evaluator.metrics, list(evaluator.export_results)


__all__ = ['EvalSpec', 'TrainSpec', 'train_and_evaluate']
