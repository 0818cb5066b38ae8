"""Checkpoints: cadence, retention, atomicity, resumption across processes, kill -9."""
from __future__ import annotations

import contextlib
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

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(_TESTS, '_train_script.py')


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
  # At the start (TF's CheckpointSaverHook), every 3 steps, and always at the end.
  assert _steps(model_dir) == [0, 3, 6, 9, 10]
  est.train(_repeat(x, y), steps=1)  # resumed from 10: that checkpoint is not written again
  assert _steps(model_dir) == [0, 3, 6, 9, 10, 11]
  # keep_checkpoint_max keeps the newest ones, also across train() calls and Estimator objects.
  keep2 = Estimator(_models.linear_model_fn(), model_dir,
                    config=RunConfig(save_checkpoints_steps=1, keep_checkpoint_max=2))
  keep2.train(_repeat(x, y), steps=3)
  assert _steps(model_dir) == [13, 14]
  assert keep2.latest_checkpoint().endswith(os.sep + '14')


def test_default_config_saves_at_the_start_and_the_end(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  est.train(_repeat(x, y), steps=7)
  assert _steps(model_dir) == [0, 7]


def test_save_by_seconds(data, model_dir):
  x, y = data
  clock = [0.0]

  class Tick(hooks_lib.Hook):  # one fake second per step
    def after_step(self, ctx, values):
      clock[0] += 1.0

  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_checkpoints_secs=3, keep_checkpoint_max=None))
  # The loop of Estimator.train, on the Estimator's own parts, with the clock injected.
  train_lib.train(est.compiled_model, est.state_store, est.input_pipeline, est.config,
                  _repeat(x, y), [Tick()], 7, None, [], est.summary_writers,
                  clock=lambda: clock[0])
  assert _steps(model_dir) == [0, 3, 6, 7]


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


@contextlib.contextmanager
def _child_trainer(args: dict, log_path):
  """`_train_script.py` training in a child process, SIGKILLed at the latest on exit."""
  log = open(log_path, 'wb')  # a file, not a pipe: a full pipe would block the child
  proc = subprocess.Popen([sys.executable, SCRIPT, json.dumps(args)], stdout=log, stderr=log)
  try:
    yield proc
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=30)
    log.close()


@pytest.mark.slow
def test_kill_9_during_training_then_resume(tmp_path):
  model_dir = str(tmp_path / 'killed')
  args = dict(model='linear', model_dir=model_dir, save_checkpoints_steps=1,
              keep_checkpoint_max=3, max_steps=100000, sleep=0.005)
  with _child_trainer(args, tmp_path / 'child.log') as proc:
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
  assert proc.returncode == -signal.SIGKILL
  complete = _steps(model_dir)
  assert complete and complete[-1] >= 8
  est, input_fn = _train_script.build({**args, 'save_checkpoints_steps': 1000})
  latest = int(os.path.basename(est.latest_checkpoint()))
  assert latest >= complete[-1]  # maybe one more finished between listing and the kill
  est.train(input_fn, steps=3)
  assert int(est.get_variable_value('global_step')) == latest + 3
  assert np.all(np.isfinite(est.get_variable_value('params/Dense_0/kernel')))


# -- unreadable step folders ------------------------------------------------------------------
def _trained_to_12(model_dir, x, y, keep=5):
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_checkpoints_steps=4, keep_checkpoint_max=keep))
  est.train(_repeat(x, y), max_steps=12)
  assert _steps(model_dir) == [0, 4, 8, 12][-keep:]
  return est


def _fresh(model_dir, keep=5, every=4):
  return Estimator(_models.linear_model_fn(), model_dir,
                   config=RunConfig(save_checkpoints_steps=every, keep_checkpoint_max=keep))


@pytest.mark.parametrize('damage', ['empty_step_folder', 'corrupt_meta', 'corrupt_variables',
                                    'no_commit_record'])
def test_an_unreadable_newest_step_is_skipped_with_a_warning(data, model_dir, caplog, damage):
  x, y = data
  kernel_at_12 = _trained_to_12(model_dir, x, y).get_variable_value('params/Dense_0/kernel')
  if damage == 'empty_step_folder':  # what a crashed copy leaves
    bad = os.path.join(model_dir, '999')
    os.makedirs(bad)
    expected_error, newest = '_CHECKPOINT_METADATA is missing', '12'
  else:
    bad = os.path.join(model_dir, '12')
    file = {'corrupt_meta': 'meta/metadata', 'corrupt_variables': 'variables/_METADATA',
            'no_commit_record': '_CHECKPOINT_METADATA'}[damage]
    if damage == 'no_commit_record':
      os.remove(os.path.join(bad, file))
      expected_error = '_CHECKPOINT_METADATA is missing'
    else:
      with open(os.path.join(bad, file), 'w') as f:
        f.write('{"truncated": ')
      expected_error = f'{file} is unreadable (JSONDecodeError'
    newest = '8'
  est = _fresh(model_dir)
  with caplog.at_level('WARNING', logger='jestimator'):
    assert est.latest_checkpoint() == os.path.join(model_dir, newest)
  warning = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert any(bad in m and expected_error in m and f'{os.sep}{newest}' in m for m in warning), warning
  # evaluate, predict and train all use the newest intact checkpoint.
  assert est.evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=50, shuffle=False)
                      )['global_step'] == int(newest)
  assert len(list(est.predict(inputs.numpy_input_fn({'x': x}, batch_size=50, shuffle=False)))) == 100
  est.train(_repeat(x, y), steps=2)
  assert est.get_variable_value('global_step') == int(newest) + 2
  if newest == '12':
    np.testing.assert_array_equal(  # resumed from 12, trained 2 steps: moved on from it
        _fresh(model_dir).get_variable_value('global_step'), 14)
    assert not np.array_equal(est.get_variable_value('params/Dense_0/kernel'), kernel_at_12)
  assert os.path.isdir(bad)  # never deleted


def test_retention_counts_only_intact_steps(data, model_dir):
  x, y = data
  _trained_to_12(model_dir, x, y)
  junk = [os.path.join(model_dir, str(s)) for s in range(995, 1000)]
  for j in junk:
    os.makedirs(j)
  # keep 2: five unreadable folders above must neither count nor be deleted; with Orbax's own
  # listing the intact checkpoints would all be removed as "older".
  est = _fresh(model_dir, keep=2, every=1)
  est.train(_repeat(x, y), steps=3)
  assert _steps(model_dir) == [14, 15] + list(range(995, 1000))
  assert est.latest_checkpoint() == os.path.join(model_dir, '15')


def test_saving_onto_an_unreadable_folder_of_that_step_moves_it_aside(data, model_dir):
  x, y = data
  _trained_to_12(model_dir, x, y)
  os.makedirs(os.path.join(model_dir, '14', 'variables'))
  est = _fresh(model_dir, every=100)
  est.train(_repeat(x, y), steps=2)
  assert est.latest_checkpoint() == os.path.join(model_dir, '14')
  assert [d for d in os.listdir(model_dir) if d.startswith('14.unreadable-')]


def test_only_unreadable_step_folders_is_an_error_not_a_silent_restart(data, model_dir):
  x, y = data
  _trained_to_12(model_dir, x, y, keep=1)
  with open(os.path.join(model_dir, '12', 'meta', 'metadata'), 'w') as f:
    f.write('garbage')
  est = _fresh(model_dir)
  with pytest.raises(ValueError, match='no intact checkpoint.*12'):
    est.train(_repeat(x, y), steps=1)
  assert _steps(model_dir) == [12]


def test_leftovers_of_killed_saves_and_retention_are_removed_others_reported(data, model_dir,
                                                                            caplog):
  """Issue 24: a step folder retention half-deleted when killed (older than every intact step
  while retention keeps its count) and a save's `*.orbax-checkpoint-tmp-*` are removed when the
  next trainer starts; an unreadable folder among the kept steps is reported, never deleted."""
  x, y = data
  _trained_to_12(model_dir, x, y, keep=2)            # steps 8 and 12
  half = os.path.join(model_dir, '4', 'variables')   # retention removed its other files
  os.makedirs(half)
  with open(os.path.join(half, 'array.0'), 'wb') as f:
    f.write(b'\0' * 10)
  os.makedirs(os.path.join(model_dir, '10'))          # among the kept steps: someone's data?
  tmp = os.path.join(model_dir, '16.orbax-checkpoint-tmp-1234', 'variables')
  os.makedirs(tmp)
  with caplog.at_level('WARNING', logger='jestimator'):
    _fresh(model_dir, keep=2, every=100).train(_repeat(x, y), steps=1)
  assert _steps(model_dir) == [10, 12, 13]
  assert not any('orbax-checkpoint-tmp' in d for d in os.listdir(model_dir))
  text = caplog.text
  assert 'Removing 1 step folder(s) that checkpoint retention had half-deleted' in text
  assert os.path.join(model_dir, '4') in text and '16.orbax-checkpoint-tmp-1234' in text
  assert f"holds 1 unreadable step folder(s), left in place: {os.path.join(model_dir, '10')}" in text


def _damage_arrays(step_dir, how):
  """Flips or truncates the array data files of a checkpoint's `variables` (OCDBT `d/` files)."""
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, 'variables'))
           for f in fs if os.path.basename(r) == 'd']
  assert files
  for file in files:
    data = bytearray(open(file, 'rb').read())
    if how == 'flipped':
      data[len(data) // 2:] = bytes(b ^ 0xff for b in data[len(data) // 2:])
    else:
      data = data[:len(data) // 2]
    open(file, 'wb').write(bytes(data))


@pytest.mark.parametrize('how', ['flipped', 'truncated'])
def test_damaged_arrays_of_the_newest_step_fall_back_to_the_older_one(data, model_dir, caplog,
                                                                       how):
  """Issue 24: evaluate and train use the newest step whose arrays read back, warning with the
  damaged step's name; the damaged folder is never deleted (a later save of that step moves it
  aside)."""
  x, y = data
  kernel_at_8 = np.array(_fresh(model_dir).train(_repeat(x, y), max_steps=8)
                         .get_variable_value('params/Dense_0/kernel'))
  _fresh(model_dir).train(_repeat(x, y), max_steps=12)
  _damage_arrays(os.path.join(model_dir, '12'), how)
  est = _fresh(model_dir)
  with caplog.at_level('WARNING', logger='jestimator'):
    result = est.evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=50, shuffle=False))
  assert result['global_step'] == 8
  assert f'Checkpoint {os.path.join(model_dir, "12")} (step 12) is damaged' in caplog.text
  trainer = _fresh(model_dir, every=100)
  trainer.train(_repeat(x, y), steps=1)           # resumed from 8, not from 12 or from scratch
  assert trainer.get_variable_value('global_step') == 9
  assert not np.array_equal(trainer.get_variable_value('params/Dense_0/kernel'), kernel_at_8)
  assert 12 in _steps(model_dir)                  # still there
  trainer.train(_repeat(x, y), steps=3)           # saving step 12 moves the damaged one aside
  assert [d for d in os.listdir(model_dir) if d.startswith('12.unreadable-')]
  assert trainer.get_variable_value('global_step') == 12


def test_an_evaluation_racing_retention_uses_the_newest_intact_step(data, model_dir, monkeypatch):
  """Issue 24: the step chosen by evaluate() is deleted by a concurrent trainer's retention
  before it is read: the newest intact step is evaluated instead of Orbax's error."""
  import shutil
  from jestimator.state import checkpoints as ckpt_lib
  x, y = data
  _trained_to_12(model_dir, x, y)
  restore = ckpt_lib.Checkpointer.restore

  def racing(self, step, *args, **kwargs):
    if step == 12:   # the trainer's retention wins the race
      shutil.rmtree(self.path(step))
    return restore(self, step, *args, **kwargs)

  monkeypatch.setattr(ckpt_lib.Checkpointer, 'restore', racing)
  result = _fresh(model_dir).evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=50,
                                                            shuffle=False))
  assert result['global_step'] == 8


def test_a_full_disk_while_saving_is_a_clear_error_and_leaves_no_temporary_folder(tmp_path):
  """Issue 24: a write failing mid-save (EFBIG here via RLIMIT_FSIZE; ENOSPC on a full disk) is an
  OSError naming the step and model_dir, with no `*.orbax-checkpoint-tmp` left behind and no
  traceback at exit from the summary writer's cleanup."""
  model_dir = str(tmp_path / 'm')
  script = os.path.join(os.path.dirname(SCRIPT), '_full_disk_script.py')
  run = subprocess.run([sys.executable, script, model_dir], capture_output=True, text=True,
                       timeout=120, cwd=os.path.dirname(SCRIPT))
  assert run.returncode != 0 and 'unreachable' not in run.stdout
  # The error the run ends with. Orbax's writer threads may log their own raw OSError before or
  # after it, at interpreter exit: look for the line, not at the last one.
  expected = (f'OSError: [Errno 27] saving the checkpoint of step 4 in {model_dir} failed: '
              'File too large (is the disk full?); its unfinished folder is removed (now, or '
              'when training starts again); the newest complete one is '
              f'{os.path.join(model_dir, "2")}')
  assert expected in run.stderr.splitlines(), run.stderr[-3000:]
  # (Orbax's own unawaited writer coroutines may still print 'Exception ignored' at exit.)
  assert 'summaries.py' not in run.stderr and 'tensorboardX' not in run.stderr
  assert _steps(model_dir) == [0, 2]  # the start checkpoint (as TF) and step 2
  # Orbax's other writer threads may still recreate files after the error: a folder left then
  # is removed when training starts again.
  x, y = _models.make_data(100)
  _fresh(model_dir, every=100).train(_repeat(x, y), steps=1)
  assert not [d for d in os.listdir(model_dir) if 'orbax-checkpoint-tmp' in d]
  assert _steps(model_dir) == [0, 2, 3]


# -- one trainer per model_dir ----------------------------------------------------------------
def _wait_for_holder(lock_path, proc, log_path, timeout=90):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    assert proc.poll() is None, open(log_path).read()[-3000:]
    if os.path.exists(lock_path) and os.path.getsize(lock_path):
      return json.load(open(lock_path))
    time.sleep(0.05)
  raise AssertionError('the child never took the lock')


@pytest.mark.slow
def test_a_second_trainer_fails_at_once_naming_the_holder_and_a_dead_ones_lock_is_taken(
    data, tmp_path, caplog):
  import socket
  model_dir = str(tmp_path / 'shared')
  args = dict(model='linear', model_dir=model_dir, max_steps=100000, sleep=0.01)
  log_path = tmp_path / 'child.log'
  with _child_trainer(args, log_path) as proc:
    lock_path = os.path.join(model_dir, '.jestimator-train.lock')
    holder = _wait_for_holder(lock_path, proc, log_path)
    assert holder['pid'] == proc.pid and holder['host'] == socket.gethostname()
    est, input_fn = _train_script.build(args)
    with pytest.raises(RuntimeError, match=f'in use by another trainer \\(pid {proc.pid} on host '
                                           f'{socket.gethostname()}'):
      est.train(input_fn, steps=1)
    # Readers need no lock: evaluate while the other process trains (once it has a checkpoint).
    x, y = data
    while not [s for s in _steps(model_dir) if s > 0]:  # past the one at the start (step 0)
      assert proc.poll() is None
      time.sleep(0.05)
    assert est.evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=50, shuffle=False)
                        )['global_step'] >= 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  # The dead process's lock is taken over (the kernel released it), with a warning.
  with caplog.at_level('WARNING', logger='jestimator'):
    est.train(input_fn, steps=2)
  assert any(f'from pid {proc.pid}' in r.getMessage() and 'no longer running' in r.getMessage()
             for r in caplog.records)
  assert os.path.getsize(lock_path) == 0  # released after train


def test_a_lock_naming_another_host_is_an_error(data, model_dir):
  from jestimator import checkpoints
  x, y = data
  os.makedirs(model_dir)
  with open(os.path.join(model_dir, checkpoints.LOCK_FILE), 'w') as f:
    json.dump({'pid': 4242, 'host': 'other-host.example', 'since': '2026-01-01T00:00:00Z'}, f)
  est = _fresh(model_dir)
  with pytest.raises(RuntimeError, match='pid 4242 on host other-host.example.*delete'):
    est.train(_repeat(x, y), steps=1)
  assert _steps(model_dir) == []


def test_the_lock_is_released_when_training_fails(data, model_dir):
  x, y = data
  est = _fresh(model_dir)

  class Boom(hooks_lib.Hook):
    def after_step(self, ctx, values):
      raise RuntimeError('boom')

  with pytest.raises(RuntimeError, match='boom'):
    est.train(_repeat(x, y), steps=3, hooks=[Boom()])
  est.train(_repeat(x, y), steps=3)  # the same process can train again
  assert est.get_variable_value('global_step') == 3


class _ReadOnly:
  """Makes a folder read-only: chmod for a normal user; a read-only bind mount for root (who
  writes through any mode bits), skipping the test where mounting is not allowed."""

  def __init__(self, path):
    self.path, self.mounted = path, False

  def __enter__(self):
    if os.geteuid() != 0:
      os.chmod(self.path, 0o555)
      return self
    done = subprocess.run(f'mount --bind {self.path} {self.path} && '
                          f'mount -o remount,bind,ro {self.path}', shell=True,
                          capture_output=True)
    if done.returncode != 0:
      subprocess.run(['umount', self.path], capture_output=True)
      pytest.skip(f'root cannot make a read-only folder here: {done.stderr.decode()[-200:]}')
    self.mounted = True
    return self

  def __exit__(self, *exc):
    if self.mounted:
      subprocess.run(['umount', self.path], check=True)
    else:
      os.chmod(self.path, 0o755)


class _CountSteps(hooks_lib.Hook):
  def __init__(self):
    self.steps = 0

  def after_step(self, ctx, values):
    self.steps += 1


def test_a_read_only_model_dir_fails_before_the_first_step(data, tmp_path):
  x, y = data
  model_dir = str(tmp_path / 'ro' / 'model')
  _fresh(model_dir).train(_repeat(x, y), steps=2)  # a checkpoint and the lock file exist
  fresh_dir = str(tmp_path / 'ro' / 'not_yet')
  with _ReadOnly(str(tmp_path / 'ro')):
    for d in (model_dir, fresh_dir):
      counter = _CountSteps()
      with pytest.raises(PermissionError, match=f'model_dir {d!r} is not writable'):
        _fresh(d).train(_repeat(x, y), steps=50, hooks=[counter])
      assert counter.steps == 0
  assert _steps(model_dir) == [0, 2]
