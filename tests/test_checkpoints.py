"""Checkpoints: cadence, retention, atomicity, resumption across processes, kill -9."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import _models
import _train_script
from jestimator.driver import train as train_lib
from jestimator import hooks as hooks_lib
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_train_script.py')


def _steps(model_dir) -> list[int]:
  """Complete checkpoints on disk (Orbax writes temporary names until a save is finished)."""
  return sorted(int(d) for d in os.listdir(model_dir) if d.isdigit())


def _repeat(x, y):
  return inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False)


def _run_script(args: dict, timeout: float = 120) -> dict:
  out = subprocess.run([sys.executable, SCRIPT, json.dumps(args)], capture_output=True, text=True,
                       timeout=timeout)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_save_by_steps_always_at_the_end_and_retention(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_checkpoints_steps=3, keep_checkpoint_max=10))
  est.train(_repeat(x, y), max_steps=10)
  assert _steps(model_dir) == [3, 6, 9, 10]  # every 3 steps, and always at the end
  est.train(_repeat(x, y), steps=1)
  assert _steps(model_dir) == [3, 6, 9, 10, 11]
  # keep_checkpoint_max keeps the newest ones, also across train() calls and Estimator objects.
  keep2 = Estimator(_models.linear_model_fn(), model_dir,
                    config=RunConfig(save_checkpoints_steps=1, keep_checkpoint_max=2))
  keep2.train(_repeat(x, y), steps=3)
  assert _steps(model_dir) == [13, 14]
  assert keep2.latest_checkpoint().endswith(os.sep + '14')


def test_default_config_saves_only_at_the_end(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  est.train(_repeat(x, y), steps=7)
  assert _steps(model_dir) == [7]


def test_save_by_seconds(data, model_dir, monkeypatch):
  x, y = data
  clock = [0.0]

  class Tick(hooks_lib.Hook):  # one fake second per step
    def after_step(self, ctx, values):
      clock[0] += 1.0

  monkeypatch.setattr(train_lib, 'clock', lambda: clock[0])
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_checkpoints_secs=3, keep_checkpoint_max=None))
  est.train(_repeat(x, y), steps=7, hooks=[Tick()])
  assert _steps(model_dir) == [3, 6, 7]


def test_a_crash_mid_save_leaves_a_resumable_model_dir(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_checkpoints_steps=2))
  est.train(_repeat(x, y), max_steps=4)
  # What a process killed while writing step 6 leaves behind: a temporary directory.
  tmp = os.path.join(model_dir, '6.orbax-checkpoint-tmp')  # Orbax 0.12's name
  os.makedirs(os.path.join(tmp, 'variables'))
  with open(os.path.join(tmp, 'variables', 'junk'), 'wb') as f:
    f.write(b'\0' * 10)
  again = Estimator(_models.linear_model_fn(), model_dir,
                    config=RunConfig(save_checkpoints_steps=2))
  assert again.latest_checkpoint().endswith(os.sep + '4')
  np.testing.assert_array_equal(again.get_variable_value('params/Dense_0/kernel'),
                                est.get_variable_value('params/Dense_0/kernel'))
  again.train(_repeat(x, y), max_steps=8)
  assert 6 in _steps(model_dir) and _steps(model_dir)[-1] == 8


def test_resume_across_estimator_objects_equals_one_run(tmp_path):
  args = dict(model='linear', seed=3)
  build = lambda name: _train_script.build({**args, 'model_dir': str(tmp_path / name)})
  one, fn = build('one')
  one.train(fn, max_steps=8)
  first, _ = build('two')
  first.train(fn, max_steps=4)
  second, _ = build('two')
  second.train(fn, max_steps=8)
  assert _models.tree_equal(_models.checkpoint_params(one), _models.checkpoint_params(second))
  # The test can tell: the same batches restarted from the first one at step 4 end elsewhere
  # (an explicit seed equal to the run seed gives the same order, but is another input_fn).
  restart, _ = build('restart')
  restart.train(fn, max_steps=4)
  restart.train(inputs.numpy_input_fn(fn.x, fn.y, batch_size=16, num_epochs=None, shuffle=True,
                                      seed=3), max_steps=8)
  assert not _models.tree_equal(_models.checkpoint_params(one),
                                _models.checkpoint_params(restart))


@pytest.mark.slow
@pytest.mark.parametrize('steps_per_loop,n', [(1, 5), (4, 6)])
def test_exact_resumption_in_a_new_process(tmp_path, steps_per_loop, n):
  """train(max_steps=N) here, then train(max_steps=2N) in a new process == one run to 2N."""
  base = dict(model='mlp', seed=3, steps_per_loop=steps_per_loop)
  split_dir, one_dir = str(tmp_path / 'split'), str(tmp_path / 'one')
  est, input_fn = _train_script.build({**base, 'model_dir': split_dir})
  est.train(input_fn, max_steps=n)
  assert _run_script({**base, 'model_dir': split_dir, 'max_steps': 2 * n}) == {'global_step': 2 * n}
  one, input_fn = _train_script.build({**base, 'model_dir': one_dir})
  one.train(input_fn, max_steps=2 * n)
  resumed = _train_script.build({**base, 'model_dir': split_dir})[0]
  a, b = _models.checkpoint_params(one), _models.checkpoint_params(resumed)
  assert sorted(a) == sorted(b) and 'batch_stats/BatchNorm_0/mean' in a
  if steps_per_loop == 1:
    assert _models.tree_equal(a, b)  # bitwise: params, batch_stats, step
  else:  # the split run's loops are shaped differently (4+2 | 4+2 vs 4+4+4)
    for name in a:
      np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_kill_9_during_training_then_resume(tmp_path):
  model_dir = str(tmp_path / 'killed')
  args = dict(model='linear', model_dir=model_dir, save_checkpoints_steps=1,
              keep_checkpoint_max=3, max_steps=100000, sleep=0.005)
  log = open(tmp_path / 'child.log', 'wb')  # a file, not a pipe: a full pipe would block the child
  proc = subprocess.Popen([sys.executable, SCRIPT, json.dumps(args)], stdout=log, stderr=log)
  try:
    deadline = time.monotonic() + 90
    enough_at = None
    # Wait for a few checkpoints, then kill, while a save is in flight if one is seen within 5 s.
    while time.monotonic() < deadline:
      entries = os.listdir(model_dir) if os.path.isdir(model_dir) else []
      done = [int(e) for e in entries if e.isdigit()]
      if done and max(done) >= 8:
        enough_at = enough_at or time.monotonic()
        if any('tmp' in e for e in entries) or time.monotonic() - enough_at > 5:
          break
      assert proc.poll() is None, (tmp_path / 'child.log').read_text()[-3000:]
      time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=30)
    log.close()
  assert proc.returncode == -signal.SIGKILL
  complete = _steps(model_dir)
  assert complete and complete[-1] >= 8
  est, input_fn = _train_script.build({**args, 'save_checkpoints_steps': 1000})
  latest = int(os.path.basename(est.latest_checkpoint()))
  assert latest >= complete[-1]  # maybe one more finished between listing and the kill
  est.train(input_fn, steps=3)
  assert int(est.get_variable_value('global_step')) == latest + 3
  assert np.all(np.isfinite(est.get_variable_value('params/Dense_0/kernel')))
