"""`tune_population`: a population as Optuna trials, reported, pruned and told per member."""
from __future__ import annotations

import os

import optuna
import pytest
from optuna.distributions import FloatDistribution

from jestimator import tuning
import test_population as tp
from test_hparams import dashboard_session_groups

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_members_are_trials_pruned_within_the_population(tmp_path):
  base = str(tmp_path)
  # Half the rates are hopeless (adamw at lr 30 oscillates far above the others' loss).
  space = {'learning_rate': FloatDistribution(1e-3, 100.0, log=True)}
  study = optuna.create_study(storage=tuning.default_storage(base), study_name='jestimator')
  for lr in (3e-2, 1e-2, 30.0, 50.0, 5e-2, 80.0):
    study.enqueue_trial({'learning_rate': lr})
  study, results = tuning.tune_population(
      tp.build, base, space, 6, tp.TRAIN, tp.EVAL, every_n_steps=4,
      fixed={'weight_decay': 0.0, 'seed': 0},
      pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=4, reduction_factor=2))
  trials = study.trials
  assert [t.params['learning_rate'] for t in trials] == [3e-2, 1e-2, 30.0, 50.0, 5e-2, 80.0]
  states = [t.state.name for t in trials]
  assert states.count('PRUNED') >= 2 and 'COMPLETE' in states, states
  for t, r in zip(trials, results):
    assert r.model_dir == tuning.trial_dir(base, t.number)
    record = tuning.read_trial_file(r.model_dir)
    assert record['state'] == t.state.name and record['params'] == t.params
    # Every evaluation of the member was reported to its trial, at its step.
    assert t.intermediate_values == {s: res['loss'] for s, res in r.evaluations}
    if t.state.name == 'COMPLETE':
      assert t.value == pytest.approx(r.final['loss'])
    else:
      # Optuna records a pruned trial's last reported value.
      assert r.status == 'pruned' and t.value == r.evaluations[-1][1]['loss']
  best = study.best_trial
  assert best.params['learning_rate'] < 1.0
  # The best trial's folder is an ordinary model_dir of its Estimator.
  est = tp.build({**best.params, 'weight_decay': 0.0, 'seed': 0},
                 tuning.trial_dir(base, best.number))
  assert est.evaluate(tp.EVAL)['loss'] == pytest.approx(best.value, abs=1e-5)
  assert os.path.exists(os.path.join(base, tuning.hparams.CONFIG_FILE))
  # TensorBoard's HParams tab lists every member as a trial, with its rate and last evaluation.
  _, groups = dashboard_session_groups(base)
  assert sorted(groups) == sorted(f'trial_{t.number}' for t in trials)
  for t, r in zip(trials, results):
    group = groups[f'trial_{t.number}']
    assert group['hparams']['learning_rate'] == pytest.approx(t.params['learning_rate'])
    (metric,) = group['metricValues']
    assert metric['trainingStep'] == r.global_step
    assert metric['value'] == pytest.approx(r.evaluations[-1][1]['loss'])
