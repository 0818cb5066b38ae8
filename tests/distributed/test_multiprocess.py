"""2 processes x 2 CPU devices on 127.0.0.1 with DataParallel, against a single-process run.

Each test starts its processes with a unique free port and a hard SIGKILL timeout (JAX swallows
SIGTERM, and a killed peer can leave the survivor waiting in a collective).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import _dist_models as m  # noqa: E402

import jestimator as je  # noqa: E402

TOL = 1e-5
HEARTBEAT = 5
# The documented bound: a survivor ends within the heartbeat timeout plus a few seconds of
# detection and shutdown (see jestimator/distributed/runtime.py). Generous for a loaded machine.
DEAD_PEER_BOUND = HEARTBEAT + 20

pytestmark = pytest.mark.slow


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(mode: str, model_dir: str, out: str, timeout: float):
  """Starts both processes; returns `[(returncode, stderr, end time)]` in process order."""
  port = _free_port()
  procs = []
  for pid in range(2):
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'HEARTBEAT': str(HEARTBEAT),
           'JESTIMATOR_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
           'JESTIMATOR_NUM_PROCESSES': '2', 'JESTIMATOR_PROCESS_ID': str(pid),
           'PYTHONPATH': os.pathsep.join([HERE, REPO, os.environ.get('PYTHONPATH', '')])}
    env.pop('XLA_FLAGS', None)
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(HERE, '_multiprocess_worker.py'), mode, model_dir, out],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
  deadline = time.monotonic() + timeout
  ends = [None, None]
  try:
    while any(e is None for e in ends) and time.monotonic() < deadline:
      for i, p in enumerate(procs):
        if ends[i] is None and p.poll() is not None:
          ends[i] = time.time()
      time.sleep(0.05)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()  # SIGKILL
  return [(p.wait(), p.stderr.read(), end) for p, end in zip(procs, ends)]


@pytest.fixture(scope='module')
def single_process(tmp_path_factory):
  """The reference: one process, one device, the same 20 global batches."""
  model_dir = str(tmp_path_factory.mktemp('reference'))
  # As the workers: 10 steps, then a new Estimator resumes to 20 (the generator input restarts).
  je.Estimator(m.model_fn, model_dir, config=je.RunConfig(seed=3)).train(m.train_input_fn(),
                                                                          max_steps=10)
  est = je.Estimator(m.model_fn, model_dir, config=je.RunConfig(seed=3))
  est.train(m.train_input_fn(), max_steps=20)
  vars_ = {k: est.get_variable_value(k) for k in est.get_variable_names() if k != 'global_step'}
  out = {'vars': vars_, 'eval': est.evaluate(m.eval_input_fn()),
         'pred': [float(p['y']) for p in est.predict(m.predict_input_fn())]}
  dnn = m.dnn_classifier(os.path.join(model_dir, 'dnn'), je.RunConfig(seed=3))
  dnn.train(m.train_input_fn(m.CLASS_LABELS), max_steps=20)
  out['dnn'] = {k: dnn.get_variable_value(k) for k in dnn.get_variable_names()
                if k != 'global_step'}
  return out


def _run_ok(mode: str, model_dir: str, out: str):
  """`(runs, [results of process 0, 1])` of a run both processes must finish."""
  runs = _launch(mode, model_dir, out, timeout=150)
  for pid, (code, stderr, _) in enumerate(runs):
    if code != 0:
      pytest.fail(f'process {pid} failed ({code}):\n{stderr[-4000:]}')
  results = []
  for pid in range(2):
    with open(f'{out}.{pid}') as f:
      results.append(json.load(f))
  return runs, results


@pytest.fixture(scope='module')
def multi_process(tmp_path_factory):
  root = tmp_path_factory.mktemp('multiprocess')
  model_dir = str(root / 'model')
  _, results = _run_ok('train', model_dir, str(root / 'out.json'))
  return model_dir, results


def _max_diff(a, b) -> float:
  assert sorted(a) == sorted(b)
  return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def test_two_processes_match_single_process(multi_process, single_process):
  _, results = multi_process
  for pid, res in enumerate(results):
    got = res['custom']
    assert _max_diff(got['vars'], single_process['vars']) <= TOL, pid
    for metric in ('loss', 'mae'):
      assert got['eval'][metric] == pytest.approx(single_process['eval'][metric], abs=TOL)
    assert got['eval']['global_step'] == 20
    # Each process gets the predictions of the rows it fed: rows 4*pid .. 4*pid+3.
    np.testing.assert_allclose(got['pred'], single_process['pred'][4 * pid:4 * pid + 4],
                               atol=TOL)


def test_dnn_classifier_two_processes(multi_process, single_process):
  _, results = multi_process
  for pid, res in enumerate(results):
    assert _max_diff(res['dnn']['vars'], single_process['dnn']) <= TOL, pid


def test_checkpoint_restores_in_one_process(multi_process, single_process):
  model_dir, _ = multi_process
  est = je.Estimator(m.model_fn, model_dir, config=je.RunConfig(seed=3))
  assert est.latest_checkpoint().endswith('20')
  got = {k: est.get_variable_value(k) for k in est.get_variable_names() if k != 'global_step'}
  assert _max_diff(got, single_process['vars']) <= TOL
  # The multi-process evaluation was recorded once, by process 0 only.
  with open(os.path.join(model_dir, 'eval', 'eval_results.jsonl')) as f:
    records = [json.loads(line) for line in f if line.strip()]
  assert len(records) == 1 and records[0]['global_step'] == 20
  ev = est.evaluate(m.eval_input_fn(), name='single')
  assert ev['loss'] == pytest.approx(single_process['eval']['loss'], abs=TOL)


def test_train_and_evaluate_stops_all_processes_together(multi_process):
  model_dir, results = multi_process
  # Only process 1 asked to stop at 7; both stopped there (else process 0 would hang at step 8).
  assert [r['tae']['step'] for r in results] == [7, 7]
  assert results[0]['tae']['loss'] == results[1]['tae']['loss']
  with open(os.path.join(model_dir, 'tae', 'eval', 'eval_results.jsonl')) as f:
    assert [json.loads(line)['global_step'] for line in f if line.strip()] == [3, 6, 7]
  exports = results[0]['tae']['exports']
  assert results[1]['tae']['exports'] == []  # process 1 exported into a scratch folder only
  assert len(exports) == 3 and all(os.path.isdir(p) for p in exports)
  assert sorted(os.listdir(os.path.join(model_dir, 'tae', 'export', 'latest'))) == sorted(
      os.path.basename(p) for p in exports)


def test_dead_peer_ends_survivor_within_bound(tmp_path):
  out = str(tmp_path / 'killed.json')
  runs = _launch('die', str(tmp_path / 'model'), out, timeout=90)
  (code0, stderr0, end0), (code1, _, _) = runs
  assert code1 == -9  # process 1 killed itself
  with open(out) as f:
    killed_at = json.load(f)['killed_at']
  assert end0 is not None, 'the survivor was still running at the hard timeout'
  assert code0 != 0
  assert end0 - killed_at <= DEAD_PEER_BOUND, end0 - killed_at
  # JAX's own message, naming the cause.
  assert 'another task died' in stderr0 and 'heartbeats' in stderr0, stderr0[-3000:]


def test_inputs_of_different_lengths_stop_all_processes_at_the_first_end(tmp_path):
  """Stops are agreed across processes; the end of one process's input is a stop like any other
  (before, the other process waited in a collective until the heartbeat killed it)."""
  model_dir = str(tmp_path / 'model')
  runs, results = _run_ok('uneven', model_dir, str(tmp_path / 'out.json'))
  assert [r['first']['step'] for r in results] == [6, 6]
  assert [r['second']['step'] for r in results] == [11, 11]  # 6 + the shorter input's 5
  assert _max_diff(results[0]['first']['vars'], results[1]['first']['vars']) == 0
  assert 'all stop at step 6, as at the end of input' in runs[1][1]  # process 1 had more
  # Checkpoints at the start (0), at the cadence (4, 8) and at each end (6, 11), readable in one
  # process.
  assert sorted(int(d) for d in os.listdir(model_dir) if d.isdigit()) == [0, 4, 6, 8, 11]
  est = je.Estimator(m.model_fn, model_dir, config=je.RunConfig(seed=3))
  assert est.get_variable_value('global_step') == 11
