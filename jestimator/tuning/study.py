"""`tune(...)`: an Optuna study over an Estimator in one call, resumable and shareable by workers.

Storage: by default `sqlite:///<base_dir>/study.db` (Optuna's RDB storage, with a 60 s SQLite busy
timeout so several worker processes on one machine can share it). Each worker runs the same
`tune(...)` call; the study is created once (`load_if_exists`) and every worker asks it for the
next trial, so `n_trials` is the study's total of finished trials, not a per-worker count. Across
machines pass a database URL every machine reaches (`postgresql://user:pw@host/db`,
`mysql+pymysql://...`) and a `base_dir` on a shared file system.

Restarts: trials send a heartbeat every `heartbeat_interval` seconds. A worker that dies mid-trial
(kill -9, a lost machine) leaves a RUNNING trial with a stale heartbeat; the next worker to start a
trial marks it FAIL and `RetryHeartbeatStaleTrialCallback` enqueues a retry with the same parameters (and
its reported evaluations); the retry copies the failed trial's folder and resumes training from its
last checkpoint (see `objective`). Trials that finished are never rerun.

Exactly `n_trials`: a worker counts the finished and running trials and starts its next trial
(a WAITING one first: a stale trial's retry or an enqueued trial)
under an `flock` on `base_dir/study.lock`, so two workers never both take the last one; a worker
with nothing left to start waits for the running trials to finish (or go stale, then it runs the
retry) and returns when the study has `n_trials` finished trials. Across machines the lock only
orders the workers of one machine (and `flock` over NFS is not guaranteed): the study may then
overshoot by up to one trial per extra machine.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
import warnings
from typing import Any, Callable, Mapping

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from jestimator.driver.estimator import Estimator
from jestimator.tuning.objective import BuildFn, _check_direction, make_objective, trial_dir

STORAGE_FILE = 'study.db'
MAX_RETRY = 3
LOCK_FILE = 'study.lock'
POLL_SECS = 1.0


def default_storage(base_dir: str) -> str:
  """The SQLite URL `tune` uses when none is given: `sqlite:///<base_dir>/study.db`."""
  return 'sqlite:///' + os.path.join(os.path.abspath(base_dir), STORAGE_FILE)


def make_storage(url: str, heartbeat_interval: int | None = 10,
                 grace_period: int | None = None) -> RDBStorage:
  """An RDB storage with heartbeats and retries of failed trials (see the module docstring);
  `heartbeat_interval=None`: neither (an ask-and-tell study, e.g. `tune_population`)."""
  engine_kwargs = {'connect_args': {'timeout': 60}} if url.startswith('sqlite') else {}
  if heartbeat_interval is None:
    return RDBStorage(url, engine_kwargs=engine_kwargs)
  with _quiet():
    return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                      grace_period=grace_period,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                          max_retry=MAX_RETRY, inherit_intermediate_values=True))


@contextlib.contextmanager
def _quiet():
  """Heartbeats and their retries are "experimental" in Optuna (since 2.8): docs/tuning.md says
  so once, instead of a warning on every trial."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
    yield


def _suggest(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
  if isinstance(dist, FloatDistribution):
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
  if isinstance(dist, IntDistribution):
    return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
  if isinstance(dist, CategoricalDistribution):
    return trial.suggest_categorical(name, dist.choices)
  raise TypeError(f'search_space[{name!r}] must be an optuna.distributions Float/Int/'
                  f'CategoricalDistribution, got {type(dist).__name__}')


def tune(build: BuildFn, base_dir: str, metric: str, direction: str, n_trials: int,
         search_space: Mapping[str, BaseDistribution] | None = None,
         sampler: optuna.samplers.BaseSampler | None = None,
         pruner: optuna.pruners.BasePruner | None = None,
         storage: str | None = None, study_name: str = 'jestimator',
         heartbeat_interval: int = 10, grace_period: int | None = None,
         callbacks: list[Callable] | None = None) -> optuna.Study:
  """Runs (or resumes) a study until it has `n_trials` finished (complete or pruned) trials.

  Args:
    build: `build(trial, model_dir) -> (estimator, train_spec, eval_spec)` (see
      `make_objective`).
    base_dir: trial folders (`trial_<number>`) and, by default, the SQLite study file.
    metric, direction: the evaluation metric and 'minimize' / 'maximize'.
    n_trials: finished trials the study must have; a rerun after an interruption runs only the
      missing ones, and parallel workers share the count.
    search_space: `{name: optuna distribution}` suggested before `build` is called (`build`
      then reads `trial.params`); None when `build` suggests itself.
    sampler, pruner: Optuna's (defaults: TPE, `MedianPruner()`); `optuna.pruners.NopPruner()`
      turns pruning off.
    storage: a database URL; default `sqlite:///<base_dir>/study.db`.
    study_name: the study's name in the storage.
    heartbeat_interval, grace_period: seconds; a RUNNING trial without a heartbeat for
      `grace_period` (default 2 x interval) is failed and retried.
    callbacks: more `study.optimize` callbacks.

  Returns:
    The `optuna.Study`.
  """
  _check_direction(direction)
  if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials <= 0:
    raise ValueError(f'n_trials must be a positive integer, got {n_trials!r}')
  space = dict(search_space or {})
  for name, dist in space.items():
    if not isinstance(dist, (FloatDistribution, IntDistribution, CategoricalDistribution)):
      raise TypeError(f'search_space[{name!r}] must be an optuna.distributions Float/Int/'
                      f'CategoricalDistribution, got {type(dist).__name__}')
  study = open_study(base_dir, lambda: make_storage(storage or default_storage(base_dir),
                                                    heartbeat_interval, grace_period),
                     sampler, pruner or optuna.pruners.MedianPruner(), study_name, direction)
  lock = _StartLock(os.path.join(base_dir, LOCK_FILE))
  objective = make_objective(build, base_dir, metric, direction,
                             prune=not isinstance(pruner, optuna.pruners.NopPruner))

  def space_then_objective(trial):
    lock.release()  # the trial is in the storage now: other workers may count it
    for name, dist in space.items():
      _suggest(trial, name, dist)
    return objective(trial)

  while True:
    lock.acquire()
    try:
      # Under the lock, so that two workers cannot both take the last trial.
      with _quiet():
        optuna.storages.fail_stale_trials(study)
      counts = _counts(study)
      if counts['finished'] >= n_trials:
        return study
      # A WAITING trial (a stale trial's retry, or one the user enqueued) is nobody's yet:
      # `optimize` starts waiting trials first, so only trials RUNNING elsewhere are spoken for.
      if counts['finished'] + counts['running'] < n_trials:
        with _quiet():
          study.optimize(space_then_objective, n_trials=1, callbacks=callbacks)
        continue
    finally:
      lock.release()
    # The missing trials run in other workers: wait until they finish, or die and go stale
    # (then their retry is this worker's to run).
    time.sleep(POLL_SECS)


def open_study(base_dir: str, storage: Callable[[], Any],
               sampler: optuna.samplers.BaseSampler | None, pruner: optuna.pruners.BasePruner,
               study_name: str, direction: str) -> optuna.Study:
  """Creates or loads the study in `storage()` (called, and the study created, under
  `base_dir/study.lock`: workers starting together would race to create the database's
  tables); a stored study of the other direction fails."""
  os.makedirs(base_dir, exist_ok=True)
  lock = _StartLock(os.path.join(base_dir, LOCK_FILE))
  lock.acquire()
  try:
    study = optuna.create_study(storage=storage(), sampler=sampler, pruner=pruner,
                                study_name=study_name, direction=direction,
                                load_if_exists=True)
  finally:
    lock.release()
  if study.direction.name.lower() != direction:
    raise ValueError(f'study {study_name!r} in the storage has direction '
                     f'{study.direction.name.lower()!r}, not {direction!r}')
  return study


def _counts(study: optuna.Study) -> dict[str, int]:
  """Finished (complete or pruned) and running trials."""
  S = optuna.trial.TrialState
  states = [t.state for t in study.get_trials(deepcopy=False)]
  return {'finished': sum(s in (S.COMPLETE, S.PRUNED) for s in states),
          'running': sum(s == S.RUNNING for s in states)}


class _StartLock:
  """An exclusive `flock` on a file under base_dir, held from counting the trials until the new
  trial is in the storage (reentrant-safe release: releasing twice is a no-op)."""

  def __init__(self, path: str):
    self.path, self._fd = path, None

  def acquire(self) -> None:
    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(self._fd, fcntl.LOCK_EX)

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def best_model_dir(study: optuna.Study, base_dir: str) -> str:
  """The model_dir of the study's best trial."""
  return trial_dir(base_dir, study.best_trial.number)


def best_estimator(study: optuna.Study, build: BuildFn, base_dir: str) -> Estimator:
  """The best trial's Estimator, built by `build` with its parameters in its own model_dir (so
  `predict` / `evaluate` / `export_saved_model` use its checkpoints)."""
  best = study.best_trial
  fixed = optuna.trial.FixedTrial(best.params, best.number)
  est, _, _ = build(fixed, trial_dir(base_dir, best.number))
  return est


__all__ = ['tune', 'best_estimator', 'best_model_dir', 'default_storage', 'make_storage',
           'open_study', 'STORAGE_FILE']
