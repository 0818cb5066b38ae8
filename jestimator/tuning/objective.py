"""An Optuna objective over any Estimator: one `train_and_evaluate` per trial, pruned on evaluations.

Optuna's tf.estimator integration was `TensorFlowPruningHook(trial, estimator, metric,
run_every_steps)`: a training hook that read the evaluation event files and pruned. Here the trial
sees every evaluation as it happens instead of polling files: `PruningCallback` is both an
exporter-shaped evaluation callback (`EvalSpec.exporters` hands it each evaluation's results) and a
training `Hook` (which asks the train loop to stop once the trial should be pruned). Both are
public seams of `train_and_evaluate`, so the objective works for every Estimator.

Per trial, `model_dir = base_dir/trial_<number>` holds the checkpoints, event files and
`trial.json` (`{"number", "params", "state", "value", "step", "metric", "direction",
"eval_group"}`), written before training (state "RUNNING") and rewritten when the trial ends, so
the folder says what it was; and the trial's TensorBoard HParams session (see `hparams`).
A retried trial (see `jestimator.tuning.study`) starts from a copy of the failed trial's folder, so
training resumes from its last checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import warnings
from typing import Any, Callable

import optuna

from jestimator.distributed.training import EvalSpec, TrainSpec, train_and_evaluate
from jestimator.driver.estimator import Estimator
from jestimator.driver.hooks import Hook
from jestimator.state.checkpoints import LOCK_FILE
from jestimator.tuning import hparams

logger = logging.getLogger('jestimator')

TRIAL_FILE = 'trial.json'
DIRECTIONS = ('minimize', 'maximize')

BuildFn = Callable[[optuna.trial.BaseTrial, str], tuple[Estimator, TrainSpec, EvalSpec]]


def trial_dir(base_dir: str, number: int) -> str:
  """The model_dir of trial `number`: `base_dir/trial_<number>`."""
  return os.path.join(base_dir, f'trial_{int(number)}')


def write_json(path: str, value: Any) -> None:
  """Writes JSON atomically (a temporary file renamed over `path`)."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def read_trial_file(model_dir: str) -> dict[str, Any]:
  """The `trial.json` record of a trial's model_dir."""
  path = os.path.join(model_dir, TRIAL_FILE)
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f'{path} does not exist: {model_dir!r} is not a trial folder') from None


def metric_value(eval_result: dict[str, Any], metric: str) -> float:
  """`eval_result[metric]` as a float; a missing metric names the keys there are."""
  if metric not in eval_result:
    raise KeyError(f'metric {metric!r} is not in the evaluation results; available: '
                   f'{sorted(k for k in eval_result if k != "global_step")}')
  return float(eval_result[metric])


class PruningCallback(Hook):
  """Reports each evaluation's `metric` to an Optuna trial and stops training when it is pruned.

  Pass the same object to `EvalSpec(exporters=[cb])` (it receives every evaluation's results and
  calls `trial.report(value, global_step)`, then `trial.should_prune()`) and to
  `TrainSpec(hooks=[cb])` (it requests the stop at the next step). After `train_and_evaluate`
  returns, `cb.raise_if_pruned()` raises `optuna.TrialPruned`. `make_objective` does all this.

  Args:
    trial: the `optuna.trial.Trial`.
    metric: the evaluation metric's key (e.g. 'loss', 'accuracy').
  """

  name = 'optuna_pruning'  # the exporter name; the callback never writes an export

  def __init__(self, trial: optuna.trial.BaseTrial, metric: str):
    if not isinstance(metric, str) or not metric:
      raise ValueError(f'metric must be a non-empty string, got {metric!r}')
    self.trial, self.metric = trial, metric
    self.pruned_at: int | None = None
    self.last: tuple[int, float] | None = None

  # Exporter side: `train_and_evaluate` calls this after every evaluation.
  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    del estimator, export_path, checkpoint_path, is_the_final_export
    step, value = int(eval_result['global_step']), metric_value(eval_result, self.metric)
    if self.pruned_at is None:  # the evaluation at the end of a pruned trial is not reported
      self.last = (step, value)
      self.trial.report(value, step)
      if self.trial.should_prune():
        logger.info('Trial %d pruned at step %d (%s=%g)', self.trial.number, step, self.metric,
                    value)
        self.pruned_at = step
    return None

  # Hook side: the train loop asks after each step.
  def after_step(self, ctx, values):
    if self.pruned_at is not None:
      ctx.request_stop()

  def raise_if_pruned(self) -> None:
    if self.pruned_at is not None:
      raise optuna.TrialPruned(f'pruned at step {self.pruned_at}')


def _check_direction(direction: str) -> str:
  if direction not in DIRECTIONS:
    raise ValueError(f'direction must be one of {DIRECTIONS}, got {direction!r}')
  return direction


def make_objective(build: BuildFn, base_dir: str, metric: str, direction: str,
                   prune: bool = True) -> Callable[[optuna.trial.Trial], float]:
  """An Optuna objective: build the trial's Estimator and specs, `train_and_evaluate`, return
  the last evaluation's `metric`.

  Args:
    build: `build(trial, model_dir) -> (estimator, train_spec, eval_spec)`; it reads the
      hyperparameters from the trial (`trial.suggest_float(...)`, or `trial.params` when
      `tune(search_space=...)` suggested them) and must build the estimator in `model_dir`.
    base_dir: trials train in `base_dir/trial_<number>`.
    metric: the evaluation metric to optimize.
    direction: 'minimize' or 'maximize'; must be the study's direction.
    prune: report evaluations to the trial and stop when `trial.should_prune()`; False only
      reports nothing (every trial trains to the end).

  Example:
    def build(trial, model_dir):
      lr = trial.suggest_float('learning_rate', 1e-3, 1.0, log=True)
      est = jestimator.Estimator(make_model_fn(lr), model_dir=model_dir)
      return est, TrainSpec(train_fn, max_steps=500), EvalSpec(eval_fn, every_n_steps=100)
    study = optuna.create_study(direction='minimize', pruner=optuna.pruners.MedianPruner())
    study.optimize(make_objective(build, '/tmp/tune', 'loss', 'minimize'), n_trials=20)
  """
  if not callable(build):
    raise TypeError(f'build must be callable (trial, model_dir) -> (estimator, train_spec, '
                    f'eval_spec), got {type(build).__name__}')
  _check_direction(direction)
  if not isinstance(metric, str) or not metric:
    raise ValueError(f'metric must be a non-empty string, got {metric!r}')
  base_dir = os.path.abspath(base_dir)

  def objective(trial: optuna.trial.Trial) -> float:
    study_direction = trial.study.direction.name.lower()
    if study_direction != direction:
      raise ValueError(f'the objective maximizes/minimizes with direction={direction!r} but the '
                       f'study has direction={study_direction!r}')
    model_dir = trial_dir(base_dir, trial.number)
    _resume_from_failed(trial, base_dir, model_dir)
    os.makedirs(model_dir, exist_ok=True)
    record = {'number': trial.number, 'metric': metric, 'direction': direction,
              'state': 'RUNNING', 'value': None}
    est, train_spec, eval_spec = _built(build, trial, model_dir)
    record['params'] = dict(trial.params)  # after build: it may have suggested them
    record['eval_group'] = os.path.relpath(est.eval_dir(eval_spec.name), model_dir)
    write_json(os.path.join(model_dir, TRIAL_FILE), record)
    hparams.write_session_start(model_dir, record['params'], os.path.basename(model_dir))
    callback = PruningCallback(trial, metric)
    if prune:
      train_spec = TrainSpec(train_spec.input_fn, train_spec.max_steps,
                             hooks=list(train_spec.hooks) + [callback],
                             saving_listeners=train_spec.saving_listeners)
    eval_spec = EvalSpec(eval_spec.input_fn, steps=eval_spec.steps, name=eval_spec.name,
                         hooks=eval_spec.hooks,
                         exporters=list(eval_spec.exporters) + [callback],
                         start_delay_secs=eval_spec.start_delay_secs,
                         throttle_secs=eval_spec.throttle_secs,
                         every_n_steps=eval_spec.every_n_steps)
    try:
      result, _ = train_and_evaluate(est, train_spec, eval_spec)
      callback.raise_if_pruned()
      value = metric_value(result, metric)
      if math.isnan(value):
        raise ValueError(f'trial {trial.number}: the final {metric!r} is NaN')
    except optuna.TrialPruned:
      step, value = callback.last
      _finish(trial, base_dir, model_dir, record, 'PRUNED', value=value, step=step)
      raise
    except BaseException:
      _finish(trial, base_dir, model_dir, record, 'FAIL')
      raise
    _finish(trial, base_dir, model_dir, record, 'COMPLETE', value=value,
            step=int(result['global_step']))
    return value

  return objective


def _finish(trial, base_dir: str, model_dir: str, record: dict[str, Any], state: str,
            **fields) -> None:
  """Records the trial's end: trial.json, its HParams session end and the study's HParams
  config (rewritten with every parameter the study's trials have had so far)."""
  record.update(state=state, **fields)
  write_json(os.path.join(model_dir, TRIAL_FILE), record)
  hparams.write_session_end(model_dir, state)
  distributions: dict[str, Any] = {}
  for t in trial.study.get_trials(deepcopy=False):
    distributions.update(t.distributions)
  distributions.update(trial.distributions)
  hparams.write_config(base_dir, distributions, {},
                       [(record['eval_group'], record['metric'])])


def _built(build: BuildFn, trial, model_dir: str):
  built = build(trial, model_dir)
  if not (isinstance(built, tuple) and len(built) == 3):
    raise TypeError('build(trial, model_dir) must return (estimator, train_spec, eval_spec), got '
                    f'{type(built).__name__}')
  est, train_spec, eval_spec = built
  if not isinstance(est, Estimator):
    raise TypeError(f'build returned {type(est).__name__} as the estimator, expected a '
                    'jestimator.Estimator')
  if os.path.abspath(est.model_dir) != os.path.abspath(model_dir):
    raise ValueError(f'build must create the estimator in the model_dir it is given '
                     f'({model_dir!r}), got model_dir={est.model_dir!r}')
  if not isinstance(train_spec, TrainSpec) or not isinstance(eval_spec, EvalSpec):
    raise TypeError(f'build must return a TrainSpec and an EvalSpec, got '
                    f'{type(train_spec).__name__} and {type(eval_spec).__name__}')
  return est, train_spec, eval_spec


def _resume_from_failed(trial, base_dir: str, model_dir: str) -> None:
  """A retry of a failed (e.g. killed) trial starts from a copy of that trial's folder, so
  `train` resumes from its last checkpoint (Orbax writes them atomically: a kill mid-save leaves
  the previous one as the latest)."""
  from optuna.storages import RetryHeartbeatStaleTrialCallback
  frozen = [t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number]
  with warnings.catch_warnings():  # "experimental" since Optuna 2.8
    warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
    failed = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen[0]) if frozen else None
  if failed is None or os.path.exists(model_dir):
    return
  source = trial_dir(base_dir, failed)
  if os.path.isdir(source):
    logger.info('Trial %d retries trial %d: resuming from a copy of %s', trial.number, failed,
                source)
    tmp = f'{model_dir}.tmp{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    # Not the dead trainer's lock file (on another host it would block the retry), nor its
    # HParams session: the retry writes its own.
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(LOCK_FILE, '*.hparams_*'))
    os.replace(tmp, model_dir)


__all__ = ['PruningCallback', 'make_objective', 'trial_dir', 'read_trial_file', 'TRIAL_FILE']
