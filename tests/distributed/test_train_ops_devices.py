"""A train op (the toy GAN's alternating updates) under `DataParallel` and `Pmap` on 8 fake CPU
devices and under `DataParallel` on 2 processes x 2 devices, with `steps_per_loop` 1 and 8:
the same parameters as the hand-written single-device loop at each checked step (1e-6)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import jestimator as je

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODEL_TESTS = os.path.join(os.path.dirname(HERE), 'model')
sys.path.insert(0, MODEL_TESTS)
import _gan  # noqa: E402

WORKER = os.path.join(MODEL_TESTS, '_gan_worker.py')
CHECKS = (7, 20)  # a run stops at step 7 and a new Estimator resumes it to 20
pytestmark = pytest.mark.slow


def _runs(root: str, strategy: str, k: int) -> list[dict]:
  model_dir = os.path.join(root, f'{strategy}_{k}')
  return [{'strategy': strategy, 'steps_per_loop': k, 'start': s, 'max_steps': m,
           'model_dir': model_dir} for s, m in zip((0,) + CHECKS[:-1], CHECKS)]


@pytest.fixture(scope='module')
def reference():
  est = je.Estimator(_gan.model_fn, config=je.RunConfig(seed=1))
  init = jax.device_get(est.compiled_model.create_train_state(next(_gan.input_fn()), None).params)
  out = {}
  for steps in CHECKS:
    ref = _gan.hand_written(init, steps)
    out[steps] = {f'params/{g}/{layer}/{w}': np.asarray(v) for g, layers in ref.items()
                  for layer, ws in layers.items() for w, v in ws.items()}
  return out


def _env(**extra) -> dict:
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'PYTHONPATH': os.pathsep.join([REPO, MODEL_TESTS, os.environ.get('PYTHONPATH', '')])}
  env.pop('XLA_FLAGS', None)
  return {**env, **extra}


def _check(results: dict, runs: list[dict], reference: dict) -> None:
  for i, run in enumerate(runs):
    got = results[str(i)]
    want = reference[run['max_steps']]
    assert sorted(got) == sorted(want)
    diff = max(float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in got)
    assert diff <= 1e-6, (run, diff)


def test_eight_devices_dataparallel_and_pmap(tmp_path, reference):
  runs = [r for s in ('dp', 'pmap') for k in (1, 8) for r in _runs(str(tmp_path), s, k)]
  out = str(tmp_path / 'out.json')
  proc = subprocess.run(
      [sys.executable, WORKER, json.dumps({'runs': runs, 'out': out})],
      env=_env(XLA_FLAGS='--xla_force_host_platform_device_count=8'), cwd=REPO, timeout=420,
      capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(out) as f:
    _check(json.load(f), runs, reference)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_dataparallel(tmp_path, reference):
  runs = [r for k in (1, 8) for r in _runs(str(tmp_path), 'dp', k)]
  out = str(tmp_path / 'out.json')
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, WORKER, json.dumps({'runs': runs, 'out': out})],
      env=_env(JESTIMATOR_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JESTIMATOR_NUM_PROCESSES='2',
               JESTIMATOR_PROCESS_ID=str(pid)),
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for pid in range(2)]
  try:
    errors = [p.communicate(timeout=300)[1] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()  # SIGKILL: JAX ignores SIGTERM, and a survivor may wait in a collective
  for pid, p in enumerate(procs):
    assert p.returncode == 0, f'process {pid}:\n{errors[pid][-4000:]}'
    with open(f'{out}.{pid}') as f:
      _check(json.load(f), runs, reference)
