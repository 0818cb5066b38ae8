"""Pmap and DataParallel on 8 fake CPU devices against SingleDevice and numpy references.

All multi-device work runs once, in a subprocess (`_multidevice_worker.py`) started with
`--xla_force_host_platform_device_count=8`; these tests check its results.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOL = 1e-5
XLA_FLAGS = ('--xla_force_host_platform_device_count=8 '
             '--xla_cpu_collective_call_warn_stuck_timeout_seconds=5 '
             '--xla_cpu_collective_call_terminate_timeout_seconds=10')


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp('multidevice') / 'results.json'
  env = {**os.environ, 'XLA_FLAGS': XLA_FLAGS, 'JAX_PLATFORMS': 'cpu',
         'PYTHONPATH': REPO + os.pathsep + os.environ.get('PYTHONPATH', '')}
  try:
    # subprocess.run kills (SIGKILL) the worker at the timeout: JAX ignores SIGTERM.
    proc = subprocess.run([sys.executable, os.path.join(HERE, '_multidevice_worker.py'), str(out)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f'multi-device worker timed out; stderr tail:\n{(e.stderr or b"")[-3000:]}')
  if proc.returncode != 0:
    pytest.fail(f'multi-device worker failed ({proc.returncode}):\n{proc.stderr[-5000:]}')
  with open(out) as f:
    return json.load(f)


def _get(results, name):
  error = results.get('errors', {}).get(name)
  if error:
    pytest.fail(f'worker check {name!r} raised:\n{error}')
  return results[name]


def _data(results):
  return np.asarray(results['data']['x'], np.float64), np.asarray(results['data']['y'], np.float64)


def _max_diff(a: dict, b: dict) -> float:
  assert sorted(a) == sorted(b)
  return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def _mlp_forward(v, x):
  h = np.maximum(x @ np.asarray(v['params/Dense_0/kernel']) + np.asarray(v['params/Dense_0/bias']),
                 0.0)
  return (h @ np.asarray(v['params/Dense_1/kernel']) + np.asarray(v['params/Dense_1/bias']))[:, 0]


MULTI = ['pmap', 'pmap_loop', 'pmap4', 'dp', 'dp_loop']


@pytest.mark.parametrize('name', MULTI)
def test_training_matches_single_device(results, name):
  """Same global batch, plain SGD: a gradient scaled by the device count would show."""
  mlp = _get(results, 'mlp')
  ref, got = mlp['single'], mlp[name]
  assert len(got['losses']) == len(ref['losses']) == 20
  assert np.max(np.abs(np.subtract(got['losses'], ref['losses']))) <= TOL
  assert _max_diff(got['vars'], ref['vars']) <= TOL
  if 'pred' in got:
    assert np.max(np.abs(np.subtract(got['pred'], ref['pred']))) <= TOL


def test_linear_sgd_matches_numpy(results):
  """An independent float64 SGD on the same batches anchors the gradient scale."""
  linear = _get(results, 'linear')
  x, y = _data(results)
  w, b = np.zeros(5), 0.0
  for s in range(20):
    rows = (32 * s + np.arange(32)) % len(x)  # shuffle=False, repeating: consecutive rows
    err = x[rows] @ w + b - y[rows]
    w, b = w - 0.1 * 2 * x[rows].T @ err / 32, b - 0.1 * 2 * err.mean()
  for name in ('pmap', 'dp'):
    got = linear[name]
    assert np.max(np.abs(np.asarray(got['params/Dense_0/kernel'])[:, 0] - w)) <= TOL, name
    assert abs(got['params/Dense_0/bias'][0] - b) <= TOL, name


def test_eval_and_predict_match_numpy(results):
  """Metrics over 100 rows in batches of 32 (last one 4 rows) count every example once."""
  mlp = _get(results, 'mlp')
  x, y = _data(results)
  pred = _mlp_forward(mlp['single']['vars'], x[:100])
  batches = [slice(0, 32), slice(32, 64), slice(64, 96), slice(96, 100)]
  loss = np.mean([np.mean((pred[s] - y[s]) ** 2) for s in batches])  # TF: mean of batch losses
  mae = np.mean(np.abs(pred - y[:100]))
  for name in ('single', 'pmap', 'dp'):
    ev = mlp[name]['eval']
    assert ev['global_step'] == 20
    assert ev['loss'] == pytest.approx(loss, rel=TOL, abs=TOL), name
    assert ev['mae'] == pytest.approx(mae, rel=TOL, abs=TOL), name
    np.testing.assert_allclose(mlp[name]['pred'], _mlp_forward(mlp[name]['vars'], x[:20]),
                               atol=TOL, err_msg=name)


def test_plain_mean_loss_exact_under_data_parallel(results):
  """A jnp.mean loss over a final batch of 4 rows on 8 devices: run whole, not padded."""
  mlp = _get(results, 'mlp')
  x, y = _data(results)
  for name in ('single', 'dp'):
    pred = _mlp_forward(mlp[name]['vars'], x[:100])
    batches = [slice(0, 32), slice(32, 64), slice(64, 96), slice(96, 100)]
    loss = np.mean([np.mean((pred[s] - y[s]) ** 2) for s in batches])
    assert mlp[name]['eval_plain']['loss'] == pytest.approx(loss, rel=TOL, abs=TOL), name


def test_batchnorm_statistics(results):
  bn = _get(results, 'batchnorm')
  x, _ = _data(results)
  first = x[:32]  # the first batch (shuffle=False)
  global_mean, global_var = first.mean(0), first.var(0)
  shard_var = np.mean([first[4 * d:4 * d + 4].var(0) for d in range(8)], axis=0)
  # momentum 0.9 from mean 0 / var 1; DataParallel sees the global batch, as SingleDevice.
  for name in ('single', 'dp'):
    np.testing.assert_allclose(bn[name]['first']['mean'], 0.1 * global_mean, atol=TOL)
    np.testing.assert_allclose(bn[name]['first']['var'], 0.9 + 0.1 * global_var, atol=TOL)
  # Pmap: each device normalises its own 4 rows; the moving statistics are averaged over devices.
  np.testing.assert_allclose(bn['pmap']['first']['mean'], 0.1 * global_mean, atol=TOL)
  np.testing.assert_allclose(bn['pmap']['first']['var'], 0.9 + 0.1 * shard_var, atol=TOL)
  assert np.max(np.abs(shard_var - global_var)) > 1e-2  # the two rules are distinguishable
  assert _max_diff(bn['dp']['vars'], bn['single']['vars']) <= TOL
  assert np.max(np.abs(np.subtract(bn['dp']['losses'], bn['single']['losses']))) <= TOL
  losses = bn['pmap']['losses']
  assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_batchnorm_eval_equal_across_strategies(results):
  ev = _get(results, 'batchnorm')['eval']
  for name in ('pmap', 'dp'):
    for metric in ('loss', 'mae'):
      assert ev[name][metric] == pytest.approx(ev['single'][metric], abs=TOL), (name, metric)


def test_dropout(results):
  drop = _get(results, 'dropout')
  # One identical row per device: equal keys would give every column 0 or 2 after the mean.
  probe = np.asarray(drop['pmap']['probe'])
  assert np.mean((probe != 0) & (probe != 2)) > 0.5, probe
  np.testing.assert_allclose(np.mean(probe), 1.0, atol=0.25)
  # DataParallel draws the single-device mask over the global batch.
  np.testing.assert_allclose(drop['dp']['probe'], drop['single']['probe'], atol=TOL)
  assert np.max(np.abs(np.subtract(drop['dp']['losses'], drop['single']['losses']))) <= TOL
  losses = drop['pmap']['losses']
  assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
  assert np.max(np.abs(np.subtract(losses, drop['single']['losses']))) > 1e-3  # other masks


def test_checkpoints_restore_across_strategies(results):
  """10 steps under Pmap + 10 under DataParallel == 20 under SingleDevice; eval under Single."""
  cross = _get(results, 'cross_restore')
  single = _get(results, 'mlp')['single']
  assert _max_diff(cross['vars'], single['vars']) <= TOL
  assert cross['eval']['loss'] == pytest.approx(single['eval']['loss'], abs=TOL)
  assert cross['eval']['mae'] == pytest.approx(single['eval']['mae'], abs=TOL)


@pytest.mark.parametrize('name', ['pmap', 'dp'])
def test_batch_not_divisible_raises_before_training(results, name):
  got = _get(results, 'bad_batch')[name]
  assert got['error'] is not None
  assert 'batch size' in got['error'] and '30' in got['error'] and '8 local devices' in got['error']
  assert got['checkpoint'] is None  # nothing trained, nothing saved


def test_input_context(results):
  """`(num_input_pipelines, input_pipeline_id, num_replicas_in_sync)` seen by the input_fn."""
  mlp = _get(results, 'mlp')
  got = {name: mlp[name]['input_context'] for name in mlp}
  assert got == {'single': [1, 0, 1], 'pmap': [1, 0, 8], 'pmap_loop': [1, 0, 8],
                 'pmap4': [1, 0, 4], 'dp': [1, 0, 8], 'dp_loop': [1, 0, 8]}


def test_dnn_classifier_matches_single_device(results):
  dnn = _get(results, 'dnn')
  ref = dnn['single']
  for name in ('pmap', 'dp'):
    assert np.max(np.abs(np.subtract(dnn[name]['losses'], ref['losses']))) <= TOL, name
    assert _max_diff(dnn[name]['vars'], ref['vars']) <= TOL, name
    for metric, value in ref['eval'].items():
      assert dnn[name]['eval'][metric] == pytest.approx(value, abs=TOL), (name, metric)


def test_pmap_example_script_trains(results):
  """examples/pmap_training.py: a hand-written pmap loop over the public step builders."""
  ex = _get(results, 'example')
  assert np.all(np.isfinite(ex['losses'])) and ex['losses'][-1] < ex['losses'][0]
  assert ex['metrics']['accuracy'] > 0.8 and 0.0 < ex['metrics']['loss'] < ex['losses'][0]


def test_summaries_and_hook_fetches_under_every_strategy(results):
  out = _get(results, 'summaries')
  x, _ = _data(results)
  batches = [x[i * 32:(i + 1) * 32] for i in range(5)]  # in order, batches of 32
  for name, res in out.items():
    if name.endswith('_loop'):
      # 5 steps a dispatch: hooks see one dispatch (the last step's values), summaries at step 5.
      np.testing.assert_allclose(res['fetched_means'], [batches[4][:, 0].mean()], rtol=1e-5)
      assert [s for s, _ in res['train']['mean_x0']] == [5], name
    else:
      np.testing.assert_allclose(res['fetched_means'], [b[:, 0].mean() for b in batches],
                                 rtol=1e-5, err_msg=name)
      # Per-example hook tensors come back whole, rows in order, also from 8 replicas.
      np.testing.assert_allclose(res['fetched_x0'], [b[:, 0] for b in batches], rtol=1e-6,
                                 err_msg=name)
      steps = [2, 4, 5]  # every 2 steps and the last
      assert [s for s, _ in res['train']['mean_x0']] == steps, name
      np.testing.assert_allclose([v for _, v in res['train']['mean_x0']],
                                 [batches[s - 1][:, 0].mean() for s in steps], rtol=1e-5)
      assert [(s, n) for s, n, _, _ in res['train']['x']] == [(s, 32 * 5) for s in steps], name
    # Evaluation: 100 rows in batches of 32, the last one (4 rows) padded; padding not counted.
    ev = x[:100]
    (step, value), = res['eval']['mean_x0']
    assert step == 5
    np.testing.assert_allclose(value, np.mean([ev[i:i + 32, 0].mean() for i in range(0, 100, 32)]),
                               rtol=1e-5, err_msg=name)
    (_, num, lo, hi), = res['eval']['x']
    assert num == ev.size and np.isclose(lo, ev.min()) and np.isclose(hi, ev.max()), name
