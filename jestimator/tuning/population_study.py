"""A population as Optuna trials: `tune_population(...)` asks the study for N trials, trains them
as one `Population` and tells the study each member's result (ask-and-tell).

Each member is an ordinary trial: its folder is `base_dir/trial_<number>` (as `tune`'s, with
`trial.json`, its checkpoint, its `eval/` scalars and its TensorBoard HParams session), every
evaluation is reported with `trial.report(value, step)`, and a member whose trial
`should_prune()` is masked out of the population from then on and told PRUNED.

Pruners: the members of one population run at the same time, so a pruner that compares with
*completed* trials (`MedianPruner`, `PercentilePruner`) has nothing to compare with in the
first population of a study (later populations, or `tune` trials, give it some);
`SuccessiveHalvingPruner` and `HyperbandPruner` compare the trials that reached the same rung,
running ones included, so they prune inside a population.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

import optuna
from optuna.distributions import BaseDistribution

from jestimator.tuning import hparams
from jestimator.tuning.objective import TRIAL_FILE, _check_direction, metric_value, trial_dir, \
    write_json
from jestimator.tuning.population import MemberResult, Population, PopulationBuildFn
from jestimator.tuning.study import default_storage, make_storage, open_study


def tune_population(build: PopulationBuildFn, base_dir: str,
                    search_space: Mapping[str, BaseDistribution], n_members: int,
                    input_fn: Callable, eval_input_fn: Callable, metric: str = 'loss',
                    direction: str = 'minimize', max_steps: int | None = None,
                    every_n_steps: int | None = None, eval_steps: int | None = None,
                    fixed: Mapping[str, Any] | None = None,
                    sampler: optuna.samplers.BaseSampler | None = None,
                    pruner: optuna.pruners.BasePruner | None = None,
                    storage: str | None = None, study_name: str = 'jestimator'
                    ) -> tuple[optuna.Study, list[MemberResult]]:
  """One population of `n_members` trials of the study (created or loaded in `storage`).

  Args:
    build: `build(hparams, model_dir) -> Estimator` (see `Population`); `hparams` holds the
      trial's params and `fixed`.
    base_dir: trial folders and, by default, the SQLite study file (as `tune`).
    search_space: `{name: optuna distribution}`, names of injected optimizer hyperparameters
      (and 'seed', as an int distribution, if seeds vary).
    n_members: trials in the population.
    input_fn, eval_input_fn, max_steps, every_n_steps, eval_steps: as `Population.train`.
    metric, direction: the evaluation metric reported and told, 'minimize' or 'maximize'.
    fixed: hyperparameters every member shares (e.g. `{'seed': 0}`), not searched.
    sampler, pruner: Optuna's (default pruner: `SuccessiveHalvingPruner()`, which prunes
      within a population; see the module docstring).
    storage, study_name: as `tune`.

  Returns:
    `(study, member results)`; the results' `index` is the position in this population and
    `model_dir` the trial's folder.
  """
  _check_direction(direction)
  if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members <= 0:
    raise ValueError(f'n_members must be a positive integer, got {n_members!r}')
  fixed = dict(fixed or {})
  clash = sorted(set(fixed) & set(search_space))
  if clash:
    raise ValueError(f'{clash} are both searched (search_space) and fixed')
  # No heartbeat: it belongs to `study.optimize`; a population is asked and told.
  study = open_study(base_dir, lambda: make_storage(storage or default_storage(base_dir),
                                                    heartbeat_interval=None),
                     sampler, pruner or optuna.pruners.SuccessiveHalvingPruner(), study_name,
                     direction)
  trials = [study.ask(dict(search_space)) for _ in range(n_members)]
  dirs = [trial_dir(base_dir, t.number) for t in trials]
  records = []
  try:
    pop = Population(build, [{**t.params, **fixed} for t in trials], model_dirs=dirs)
    for t, d in zip(trials, dirs):
      os.makedirs(d, exist_ok=True)
      record = {'number': t.number, 'params': dict(t.params), 'metric': metric,
                'direction': direction, 'state': 'RUNNING', 'value': None, 'eval_group': 'eval',
                'population': [x.number for x in trials]}
      write_json(os.path.join(d, TRIAL_FILE), record)
      hparams.write_session_start(d, record['params'], os.path.basename(d))
      records.append(record)

    def on_evaluation(step: int, results: dict[int, dict[str, Any]]) -> list[int]:
      pruned = []
      for i, r in results.items():
        trials[i].report(metric_value(r, metric), step)
        if trials[i].should_prune():
          pruned.append(i)
      return pruned

    results = pop.train(input_fn, max_steps=max_steps, eval_input_fn=eval_input_fn,
                        every_n_steps=every_n_steps, eval_steps=eval_steps,
                        on_evaluation=on_evaluation)
  except BaseException:
    for t in trials:  # nothing was told yet: the whole population failed
      study.tell(t, state=optuna.trial.TrialState.FAIL)
    raise
  for t, r, record, d in zip(trials, results, records, dirs):
    value = metric_value(r.final, metric) if r.final else None
    if r.status == 'complete' and value is not None and not math.isnan(value):
      study.tell(t, value)
      state = 'COMPLETE'
    elif r.status == 'pruned':
      study.tell(t, state=optuna.trial.TrialState.PRUNED)
      state = 'PRUNED'
    else:
      study.tell(t, state=optuna.trial.TrialState.FAIL)
      state = 'FAIL'
    record.update(state=state, value=value, step=r.global_step)
    write_json(os.path.join(d, TRIAL_FILE), record)
    hparams.write_session_end(d, state)
  distributions: dict[str, Any] = {}
  for t in study.get_trials(deepcopy=False):
    distributions.update(t.distributions)
  hparams.write_config(base_dir, distributions, {}, [('eval', metric)])
  return study, results


__all__ = ['tune_population']
