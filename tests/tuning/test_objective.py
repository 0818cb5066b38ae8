"""The Optuna objective adapter: one trial folder each, params JSON, every evaluation reported,
pruning stops training, explicit metric and direction."""
from __future__ import annotations

import os

import numpy as np
import optuna
import pytest

import _tune_models as tm
import jestimator as je
from jestimator import tuning
from jestimator.summaries import read_eval_results

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _eval_losses(model_dir):
  return {step: m['loss'] for step, m in read_eval_results(os.path.join(model_dir, 'eval')).items()}


def test_trial_folder_params_reports_and_value(tmp_path):
  study = optuna.create_study(direction='minimize', sampler=optuna.samplers.RandomSampler(seed=0))
  study.optimize(tuning.make_objective(tm.make_build(), str(tmp_path), 'loss', 'minimize'),
                 n_trials=2)
  for t in study.trials:
    model_dir = tmp_path / f'trial_{t.number}'
    record = tuning.read_trial_file(str(model_dir))
    assert record['params'] == t.params and record['number'] == t.number
    assert record['state'] == 'COMPLETE' and record['value'] == t.value and record['step'] == 20
    losses = _eval_losses(str(model_dir))
    # Every evaluation the Estimator wrote (steps 5, 10, 15, 20) was reported, with its value.
    assert losses == pytest.approx(t.intermediate_values)
    assert sorted(t.intermediate_values) == [5, 10, 15, 20]
    assert t.value == pytest.approx(losses[20])
    # The checkpoints are the trial's own: the final variables load from its folder.
    est = tm.estimator(str(model_dir), t.params['lr'])
    assert est.latest_checkpoint().endswith('20')


class _PruneAt(optuna.pruners.BasePruner):
  """A pruner that prunes once a trial has reported a step >= `step`."""

  def __init__(self, step):
    self.step = step

  def prune(self, study, trial):
    return bool(trial.intermediate_values) and max(trial.intermediate_values) >= self.step


def test_pruned_trial_stops_training_and_raises(tmp_path):
  pruner = _PruneAt(10)
  study = optuna.create_study(direction='minimize', pruner=pruner)
  study.optimize(tuning.make_objective(tm.make_build(max_steps=200), str(tmp_path), 'loss',
                                       'minimize'), n_trials=1)
  (t,) = study.trials
  assert t.state == optuna.trial.TrialState.PRUNED
  assert sorted(t.intermediate_values) == [5, 10]  # reports stop at the pruning decision
  record = tuning.read_trial_file(str(tmp_path / 'trial_0'))
  assert record['state'] == 'PRUNED' and record['step'] == 10
  # Training stopped one step after the pruned evaluation, far from max_steps=200.
  est = tm.estimator(str(tmp_path / 'trial_0'), t.params['lr'])
  assert int(os.path.basename(est.latest_checkpoint())) == 11


def test_missing_metric_names_the_available_keys(tmp_path):
  study = optuna.create_study(direction='maximize')
  with pytest.raises(KeyError, match=r"'auc'.*available.*'accuracy'.*'loss'"):
    study.optimize(tuning.make_objective(tm.make_build(), str(tmp_path), 'auc', 'maximize'),
                   n_trials=1)
  assert tuning.read_trial_file(str(tmp_path / 'trial_0'))['state'] == 'FAIL'


def test_direction_must_be_explicit_and_match_the_study(tmp_path):
  with pytest.raises(ValueError, match='direction must be one of'):
    tuning.make_objective(tm.make_build(), str(tmp_path), 'loss', 'min')
  study = optuna.create_study(direction='maximize')
  with pytest.raises(ValueError, match="direction='minimize'.*study has direction='maximize'"):
    study.optimize(tuning.make_objective(tm.make_build(), str(tmp_path), 'loss', 'minimize'),
                   n_trials=1)
  assert not os.path.exists(tmp_path / 'trial_0')  # nothing written before the check


def test_build_must_use_the_trial_model_dir(tmp_path):
  def build(trial, model_dir):
    return (tm.estimator(str(tmp_path / 'elsewhere'), 0.1), je.TrainSpec(tm.train_input, 5),
            je.EvalSpec(tm.eval_input, steps=None))
  study = optuna.create_study(direction='minimize')
  with pytest.raises(ValueError, match='must create the estimator in the model_dir'):
    study.optimize(tuning.make_objective(build, str(tmp_path), 'loss', 'minimize'), n_trials=1)


def test_final_metric_is_the_numpy_loss_of_the_final_checkpoint(tmp_path):
  """The returned value is the evaluation loss of the trial's own final variables (numpy)."""
  from jestimator.checkpoints import Checkpointer
  import _models
  study = optuna.create_study(direction='minimize')
  study.optimize(tuning.make_objective(tm.make_build(), str(tmp_path), 'loss', 'minimize'),
                 n_trials=1)
  v = Checkpointer(str(tmp_path / 'trial_0'), read_only=True).restore_raw_variables(20)
  loss = np.mean(_models.numpy_logistic_loss(tm.X, tm.Y, v['params/Dense_0/kernel'],
                                             v['params/Dense_0/bias']))
  assert study.best_value == pytest.approx(loss, rel=1e-5)
