"""`tune`: a resumable SQLite study; parallel worker processes; kill -9 and rerun; the best trial."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import optuna
import pytest

import _tune_models as tm
from jestimator import tuning
from jestimator.checkpoints import Checkpointer
from jestimator.tuning.hparams import CONFIG_FILE as HPARAMS_CONFIG_FILE

optuna.logging.set_verbosity(optuna.logging.WARNING)
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_tune_worker.py')
_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _load(base_dir):
  return optuna.load_study(study_name='jestimator', storage=tuning.default_storage(base_dir))


def _check_finished_trials(base_dir, study):
  """Each finished trial has its folder, trial.json (params, final value) and a checkpoint."""
  finished = [t for t in study.trials if t.state in _FINISHED]
  for t in finished:
    model_dir = tuning.trial_dir(base_dir, t.number)
    record = tuning.read_trial_file(model_dir)
    assert record['params'] == t.params and record['state'] == t.state.name
    assert record['value'] == pytest.approx(t.value if t.value is not None
                                            else t.intermediate_values[record['step']])
    ckpt = Checkpointer(model_dir, read_only=True)
    assert ckpt.latest_step() == record['step'] or record['state'] == 'PRUNED'
    assert ckpt.restore_raw_variables(ckpt.latest_step())  # loads
  return finished


def test_tune_resumes_and_best_estimator(tmp_path):
  base = str(tmp_path)
  build = tm.make_build(max_steps=10, every_n_steps=5)
  sampler = optuna.samplers.RandomSampler(seed=0)
  study = tuning.tune(build, base, 'loss', 'minimize', 2, sampler=sampler)
  assert os.path.isfile(os.path.join(base, tuning.STORAGE_FILE))
  first = [(t.number, t.params, t.value) for t in study.trials]
  # A second call (a restarted tuner) with a larger budget only runs the missing trials.
  study = tuning.tune(build, base, 'loss', 'minimize', 3, sampler=sampler)
  assert [(t.number, t.params, t.value) for t in study.trials[:2]] == first
  assert len(_check_finished_trials(base, study)) == 3 == len(study.trials)
  # Called again once done, it trains nothing.
  assert len(tuning.tune(build, base, 'loss', 'minimize', 3).trials) == 3
  best = study.best_trial
  assert best.value == min(t.value for t in study.trials)
  assert tuning.best_model_dir(study, base) == os.path.join(base, f'trial_{best.number}')
  est = tuning.best_estimator(study, build, base)
  assert est.model_dir == tuning.best_model_dir(study, base)
  assert est.evaluate(tm.eval_input)['loss'] == pytest.approx(best.value, rel=1e-6)


def test_tune_search_space_and_argument_errors(tmp_path):
  def build(trial, model_dir):
    import jestimator as je
    return (tm.estimator(model_dir, trial.params['lr']), je.TrainSpec(tm.train_input, 5),
            je.EvalSpec(tm.eval_input, steps=None))
  space = {'lr': optuna.distributions.FloatDistribution(0.05, 0.5, log=True)}
  study = tuning.tune(build, str(tmp_path), 'loss', 'minimize', 1, search_space=space)
  assert 0.05 <= study.trials[0].params['lr'] <= 0.5
  with pytest.raises(TypeError, match=r"search_space\['lr'\] must be an optuna.distributions"):
    tuning.tune(build, str(tmp_path / 'x'), 'loss', 'minimize', 1, search_space={'lr': [1, 2]})
  with pytest.raises(ValueError, match='n_trials must be a positive integer'):
    tuning.tune(build, str(tmp_path / 'x'), 'loss', 'minimize', 0)
  with pytest.raises(ValueError, match="has direction 'minimize', not 'maximize'"):
    tuning.tune(build, str(tmp_path), 'loss', 'maximize', 1)
  assert not os.path.exists(tmp_path / 'x')


def _worker(base, n_trials, max_steps, every_n):
  repo = os.path.dirname(os.path.dirname(os.path.dirname(tuning.__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get('PYTHONPATH', '')]))
  return subprocess.Popen([sys.executable, _WORKER, base, str(n_trials), str(max_steps),
                           str(every_n)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _wait(proc, timeout=540):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
  base = str(tmp_path)
  workers = [_worker(base, 12, 6, 3) for _ in range(2)]
  for w in workers:
    _wait(w)
  study = _load(base)
  assert len(study.trials) == 12  # exactly the requested trials: none taken twice, none extra
  finished = _check_finished_trials(base, study)
  assert sorted(t.number for t in finished) == list(range(12))
  assert len({t.params['lr'] for t in finished}) == 12
  assert sorted(os.listdir(base)) == sorted(
      [f'trial_{i}' for i in range(12)] + [tuning.STORAGE_FILE, 'study.lock', HPARAMS_CONFIG_FILE])


def _running_with_checkpoint(base):
  """The number of a RUNNING trial that has saved a checkpoint past step 0, or None."""
  for name in os.listdir(base):
    if name.startswith('trial_'):
      path = os.path.join(base, name)
      try:
        record = tuning.read_trial_file(path)
      except (FileNotFoundError, ValueError):
        continue
      steps = [int(s) for s in os.listdir(path) if s.isdigit()]
      if record['state'] == 'RUNNING' and any(s > 0 for s in steps):
        return record['number']
  return None


@pytest.mark.slow
def test_kill_9_mid_trial_then_rerun_completes_the_study(tmp_path):
  base = str(tmp_path)
  n_trials, max_steps = 3, 60
  proc = _worker(base, n_trials, max_steps, 10)
  deadline = time.monotonic() + 300
  killed = None
  while killed is None and time.monotonic() < deadline and proc.poll() is None:
    number = _running_with_checkpoint(base)
    if number is not None and number >= 1:  # a trial in the middle of the study
      os.kill(proc.pid, signal.SIGKILL)
      killed = number
    time.sleep(0.05)
  proc.wait()
  assert killed is not None, proc.stdout.read()
  killed_dir = tuning.trial_dir(base, killed)
  killed_steps = sorted(int(s) for s in os.listdir(killed_dir) if s.isdigit())
  _wait(_worker(base, n_trials, max_steps, 10))
  study = _load(base)
  finished = _check_finished_trials(base, study)
  assert len(finished) == n_trials
  (failed,) = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
  assert failed.number == killed
  # The killed trial was retried with its parameters, resuming from its checkpoint: the retry's
  # folder holds the killed trial's checkpoints and its reports include the killed trial's.
  (retry,) = [t for t in study.trials if t.system_attrs.get('failed_trial') == killed]
  assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == failed.params
  retry_steps = Checkpointer(tuning.trial_dir(base, retry.number), read_only=True).all_steps()
  assert set(failed.intermediate_values) <= set(retry.intermediate_values)
  assert {s for s in killed_steps if s > 0} - {max(killed_steps)} <= set(retry_steps)
  # The killed trial's own folder still loads (Orbax's atomic saves).
  ckpt = Checkpointer(killed_dir, read_only=True)
  assert ckpt.latest_step() is not None and ckpt.restore_raw_variables(ckpt.latest_step())
  assert np.isfinite([t.value for t in finished]).all()


def test_a_waiting_retry_is_run_not_waited_for(tmp_path):
  """A stale trial's retry is WAITING, nobody's yet: a worker that finds the study one trial
  short with that retry queued runs it (before, it counted the retry as taken elsewhere and
  waited for ever; CI hung there after a kill -9)."""
  base = str(tmp_path)
  build = tm.make_build(max_steps=4, every_n_steps=2)
  sampler = optuna.samplers.RandomSampler(seed=0)
  study = tuning.tune(build, base, 'loss', 'minimize', 2, sampler=sampler)
  study.enqueue_trial({'lr': study.trials[0].params['lr']})
  assert [t.state.name for t in study.trials] == ['COMPLETE', 'COMPLETE', 'WAITING']
  done = []
  thread = threading.Thread(
      target=lambda: done.append(tuning.tune(build, base, 'loss', 'minimize', 3, sampler=sampler)),
      daemon=True)
  thread.start()
  thread.join(timeout=120)
  assert done, 'tune waited for a WAITING trial that no worker runs'
  assert [t.state.name for t in done[0].trials] == ['COMPLETE'] * 3
