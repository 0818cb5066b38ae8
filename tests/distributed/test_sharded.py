"""Sharded state (`DataParallel(partitioner=...)`): 8 fake CPU devices and 2 processes x 4 devices.

The multi-device work runs in subprocesses (`_sharded_worker.py`, `_sharded_compile_worker.py`,
`_sharded_mp_worker.py`); these tests check their results. One test per target of issue 18:
eq, init, ckpt, comm, err, mem, scale, mp. The partitioners' own rules: test_partitioners.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jestimator import distributed as jd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
XLA_FLAGS = ('--xla_force_host_platform_device_count=8 '
             '--xla_cpu_collective_call_warn_stuck_timeout_seconds=5 '
             '--xla_cpu_collective_call_terminate_timeout_seconds=10')
TABLE_ROWS = 1024  # _sharded_models.BUCKETS
sys.path.insert(0, HERE)


def _run_worker(script: str, *args: str, timeout: float = 420) -> dict:
  env = {**os.environ, 'XLA_FLAGS': XLA_FLAGS, 'JAX_PLATFORMS': 'cpu',
         'PYTHONPATH': os.pathsep.join([HERE, REPO, os.environ.get('PYTHONPATH', '')])}
  out = args[0]
  try:
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f'{script} timed out; stderr tail:\n{(e.stderr or b"")[-3000:]}')
  if proc.returncode != 0:
    pytest.fail(f'{script} failed ({proc.returncode}):\n{proc.stderr[-5000:]}')
  with open(out) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def mp_reference_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('mp_reference') / 'model')


@pytest.fixture(scope='module')
def results(tmp_path_factory, mp_reference_dir):
  out = str(tmp_path_factory.mktemp('sharded') / 'results.json')
  return _run_worker('_sharded_worker.py', out, mp_reference_dir)


@pytest.fixture(scope='module')
def plans(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('sharded_compile') / 'results.json')
  return _run_worker('_sharded_compile_worker.py', out)


def _get(results, name):
  error = results['errors'].get(name)
  if error:
    pytest.fail(f'worker check {name!r} raised:\n{error}')
  return results[name]


# -- 8 fake devices ---------------------------------------------------------------------------


@pytest.mark.slow
def test_eq_sharded_matches_replicated(results):
  """Target eq: 20 steps of canned wide & deep (FTRL + Adagrad in multi_transform)."""
  eq = _get(results, 'eq')
  assert eq['steps'] == 20
  assert eq['loss_diff'] <= 1e-6
  assert eq['param_diff'] <= 1e-5 and eq['slot_diff'] <= 1e-5
  assert eq['eval_diff'] <= 1e-6
  adam = eq['adam']  # Adam in masked in MultiSteps
  assert adam['loss_diff'] <= 1e-6 and adam['param_diff'] <= 1e-5 and adam['slot_diff'] <= 1e-5


@pytest.mark.slow
def test_tables_and_their_slots_are_sharded_small_ones_replicated(results):
  eq = _get(results, 'eq')
  for placement in (eq['placement'], eq['adam']['placement']):
    tables = {k: v for k, v in placement.items() if v['shape'][0] in (TABLE_ROWS, 4096)}
    others = {k: v for k, v in placement.items() if k not in tables}
    assert tables and others
    for name, v in tables.items():
      assert v['spec'].startswith("P('data'"), name
      assert v['shard_rows'] * 8 == v['shape'][0], name  # each device holds 1/8 of the rows
    for name, v in others.items():
      assert v['spec'] == 'P()', name
  names = list(eq['adam']['placement'])
  # The table's Adam moments and MultiSteps' gradient sum follow it.
  assert sum('table' in k for k in names) >= 4, names


@pytest.mark.slow
def test_init_bit_identical_and_one_eighth_of_the_memory(results):
  """Target init."""
  init = _get(results, 'init')
  assert init['identical'] and init['leaves'] > 10
  assert init['bytes_sharded'] <= init['bytes_one'] / 8 + (1 << 20)


@pytest.mark.slow
def test_ckpt_restores_on_4_and_1_devices_and_resumes(results):
  """Target ckpt: saved on 8 devices; identical on 4 (still sharded) and on 1."""
  ckpt = _get(results, 'ckpt')
  assert ckpt['resume_diff'] <= 1e-6  # 10 + restart + 10 against 20 straight
  assert ckpt['on4']['step'] == ckpt['on1']['step'] == 20
  assert ckpt['on4']['identical'] and ckpt['on1']['identical']
  assert ckpt['on4']['table_shard_rows'] == TABLE_ROWS // 4
  assert ckpt['on1']['table_shard_rows'] == TABLE_ROWS
  assert abs(ckpt['on4']['eval'] - ckpt['eval8']) <= 1e-6
  assert abs(ckpt['on1']['eval'] - ckpt['eval8']) <= 1e-6
  assert ckpt['export_diff'] <= 1e-6  # the export holds the gathered tables
  warm = ckpt['warm']  # warm start from it: values restored, table and slots sharded
  assert warm['identical'] and warm['table_shard_rows'] == TABLE_ROWS // 8
  assert warm['slot_shard_rows'] and set(warm['slot_shard_rows']) == {TABLE_ROWS // 8}


@pytest.mark.slow
def test_comm_no_collective_of_table_size(results):
  """Target comm: the sharded step moves ids and looked-up rows, never a table; the same check
  finds the replicated step's dense gradient all-reduce (so it can fail)."""
  comm = _get(results, 'comm')

  def table_sized(ops):
    return [o for o in ops if any(TABLE_ROWS in shape for shape in o['shapes'])]

  assert comm['sharded'] and not table_sized(comm['sharded']), table_sized(comm['sharded'])
  assert table_sized(comm['replicated'])


@pytest.mark.slow
def test_err_indivisible_regex_and_memory(results):
  """Target err: each fails before anything is written, naming what to change."""
  err = _get(results, 'err')
  assert "'params/dnn/input_layer/C0_embedding/embedding_weights' has 1001 rows" in \
      err['indivisible']
  assert '8 shards' in err['indivisible'] and '1000 or 1008' in err['indivisible']
  assert not err['indivisible_wrote']
  assert "'embedding_weights$' and 'C0_embedding'" in err['regex']
  assert 'per device' in err['memory'] and 'RunConfig.device_memory_bytes' in err['memory']
  assert 'embedding_weights' in err['memory'] and 'MinSizePartitioner' in err['memory']
  assert not err['memory_wrote']
  assert err['plan_fits'] and 'Largest parameters' in err['plan_summary']


# -- compile-only plans -------------------------------------------------------------------------
@pytest.mark.slow
def test_mem_wide_deep_2_17_buckets(plans):
  """Target mem: arguments within 5% of sharded/8 + replicated bytes; the step's own buffers
  (temporaries + outputs not written into the donated state) a fraction of the replicated run's.
  """
  mem = _get(plans, 'mem')
  rep, sh = mem['replicated'], mem['sharded']
  assert sh['sharded'] > 0.99 * (sh['sharded'] + sh['replicated'])
  arguments = sh['state_bytes'] + sh['batch_bytes']
  assert arguments <= 1.05 * (sh['sharded'] / 8 + sh['replicated'])
  own = lambda p: p['temp_bytes'] + p['output_bytes'] - p['alias_bytes']  # noqa: E731
  assert own(sh) <= 0.15 * own(rep), (own(sh), own(rep))
  assert sh['total_bytes'] <= 0.15 * rep['total_bytes']
  assert sh['alias_bytes'] == sh['state_bytes']  # the whole state is donated


@pytest.mark.slow
def test_init_of_a_large_state_takes_an_eighth_per_device(plans):
  """Target init at size: 455 MiB of state created sharded over 8 devices."""
  init = _get(plans, 'init')
  assert init['one'] > 455 << 20
  assert init['sharded'] <= init['one'] / 8 + (1 << 20), init


@pytest.mark.slow
def test_scale_criteo_size_plans_without_allocating(plans):
  """Target scale: 33.9 GiB of state planned on 8 devices, nothing allocated."""
  scale = _get(plans, 'scale')
  whole = scale['sharded'] + scale['replicated']
  assert whole > 33 * (1 << 30)
  assert scale['state_bytes'] + scale['batch_bytes'] <= 4.5 * (1 << 30)
  assert scale['alias_bytes'] == scale['state_bytes']
  assert scale['largest'][0]['shape'] == [10**7, 16]
  assert scale['largest'][0]['bytes_per_device'] * 8 == scale['largest'][0]['nbytes']
  assert 'GiB' in scale['summary']


# -- 2 processes x 4 devices --------------------------------------------------------------------
def _free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
  """Both processes' results and the model_dir they trained."""
  root = tmp_path_factory.mktemp('sharded_mp')
  model_dir, out = str(root / 'model'), str(root / 'out.json')
  port = _free_port()
  procs = []
  for pid in range(2):
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
           'JESTIMATOR_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
           'JESTIMATOR_NUM_PROCESSES': '2', 'JESTIMATOR_PROCESS_ID': str(pid),
           'PYTHONPATH': os.pathsep.join([HERE, REPO, os.environ.get('PYTHONPATH', '')])}
    env.pop('XLA_FLAGS', None)
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(HERE, '_sharded_mp_worker.py'), model_dir, out], env=env,
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
  errors = []
  for p in procs:
    try:
      _, err = p.communicate(timeout=400)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()  # SIGKILL: JAX ignores SIGTERM
      pytest.fail('2-process sharded run timed out')
    if p.returncode:
      errors.append(err[-4000:])
  if errors:
    pytest.fail('2-process sharded run failed:\n' + '\n'.join(errors))
  results = []
  for pid in range(2):
    with open(f'{out}.{pid}') as f:
      results.append(json.load(f))
  return results, model_dir


@pytest.mark.slow
def test_mp_two_processes_equal_one_process_and_hold_only_their_shards(two_processes, results):
  """Target mp: 2 processes x 4 devices against 1 process x 8 (both 10 + restart + 10)."""
  procs, _ = two_processes
  reference = _get(results, 'mp_reference')
  for r in procs:
    assert r['plan'] == reference['plan']  # the same global step planned
  reference = reference['vars']
  for r in procs:
    assert sorted(r['vars']) == sorted(reference)
    diff = max(float(np.max(np.abs(np.subtract(r['vars'][k], reference[k])))) for k in reference)
    assert diff <= 1e-6, diff
    assert not r['fully_addressable'] and r['table_rows_held'] == TABLE_ROWS // 2
  assert procs[0]['vars'] == procs[1]['vars'] and procs[0]['eval'] == procs[1]['eval']


@pytest.mark.slow
def test_ckpt_two_processes_restore_on_one(two_processes):
  """Target ckpt (2 processes -> 1): the sharded checkpoint restores onto this process's one
  device, sharded or not, with identical values."""
  import _sharded_models as m
  procs, model_dir = two_processes
  for strategy in (jd.SingleDevice(), jd.DataParallel(partitioner=m.PARTITIONER)):
    est = m.wide_deep(model_dir, strategy)
    source = est.input_pipeline.open(m.train_input_fn(), 'train')
    first = source.first('test')
    source.close()
    variables, step, _ = est.state_store.variables_for(first.features, first.labels, 'eval')
    assert step == 20
    flat = {'params/' + '/'.join(str(k.key) for k in path): np.asarray(v) for path, v in
            jax.tree_util.tree_flatten_with_path(variables['params'])[0]}
    saved = procs[0]['vars']
    for name, value in flat.items():
      np.testing.assert_array_equal(value, np.asarray(saved[name], value.dtype), err_msg=name)
    assert abs(est.evaluate(m.eval_input_fn())['loss'] - procs[0]['eval']) <= 1e-6
