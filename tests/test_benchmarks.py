"""The benchmark harness (`python -m benchmarks.run` / `benchmarks.compare`) at its tiny size.

Every workload runs once in-process (strategies in a subprocess with 2 host devices); the tests
check the result document's schema and its internal arithmetic, never the timings themselves.
"""
from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import compare, run  # noqa: E402
from benchmarks.workloads import _measure, _schema, _task  # noqa: E402


@pytest.fixture(scope='module')
def tiny():
  """The whole tiny suite, run once for this module (about 10 s per workload on 2 cores)."""
  progress = run.Progress(io.StringIO())
  result = run.run_suite('tiny', progress=progress, command='pytest')
  result['_progress'] = progress.stream.getvalue()
  return result


def _cases(result):
  return [(name, c) for name, w in result['workloads'].items() for c in w.get('cases', [])]


def test_tiny_suite_is_a_valid_document(tiny):
  doc = {k: v for k, v in tiny.items() if k != '_progress'}
  assert _schema.problems(doc) == []
  assert list(doc['workloads']) == ['adult', 'cold_start', 'ctr', 'mlp', 'steps_per_loop',
                                    'strategies']
  assert 'cold_cases' in doc['workloads']['cold_start'], doc['workloads']['cold_start'].get('error')
  for name in ('adult', 'ctr', 'mlp', 'steps_per_loop'):
    assert 'cases' in doc['workloads'][name], doc['workloads'][name].get('error')
  strategies = doc['workloads']['strategies']
  assert ('skipped' in strategies) == (jax.device_count() < 2)
  json.loads(json.dumps(doc))  # plain JSON all the way down (no numpy scalars)
  assert doc['machine']['device_count'] == jax.device_count()


def test_cold_start_figures_are_consistent(tiny):
  for case in tiny['workloads']['cold_start']['cold_cases']:
    runs = {r: case[r] for r in ('jestimator', 'jestimator_cached', 'baseline')}
    # The same 2 epochs in batches: equal step counts, the short final batch included.
    assert len({r['train_steps'] for r in runs.values()}) == 1, runs
    # The first process starts from an empty cache; the second one reads what it wrote.
    assert runs['jestimator']['cache_hits'] == 0 and runs['jestimator_cached']['cache_hits'] > 0
    assert runs['baseline']['cache_hits'] == 0
    for runner in ('jestimator', 'jestimator_cached'):
      for k in ('first_train_s', 'process_s', 'peak_host_rss_mib'):
        want = runs[runner][k] / runs['baseline'][k]
        assert case['ratio'][f'{runner}/{k}'] == pytest.approx(want), (runner, k)
    for r in runs.values():
      assert r['first_train_s'] <= r['process_s'] and math.isfinite(r['final_loss'])


def test_tiny_suite_figures_are_consistent(tiny):
  for name, case in _cases(tiny):
    est, base = case['jestimator'], case['baseline']
    # The Estimator replays the baseline's plan: same steps, same batch, same steps_per_loop.
    for k in ('train_steps', 'batch_size', 'steps_per_loop'):
      assert est[k] == base[k], (name, case['case'], k)
    for run_ in (est, base):
      reps = run_['train_examples_per_sec_repeats']
      assert run_['train_examples_per_sec'] == pytest.approx(float(np.median(reps)))
      assert run_['train_examples_per_sec_min'] == min(reps)
      assert run_['train_examples_per_sec_max'] == max(reps)
      assert run_['step_time_ms_p50'] <= run_['step_time_ms_p90']
      assert run_['compile_s'] > 0 and run_['checkpoint_mib'] > 0
      q = run_['quality']
      assert 0 <= q['accuracy'] <= 1 and 0 <= q['auc'] <= 1 and q['loss'] > 0
    for k in _task.RATIO_KEYS:
      assert case['ratio'][k] == pytest.approx(est[k] / base[k]), k
  steps = [c for n, c in _cases(tiny) if n == 'steps_per_loop']
  assert [c['jestimator']['steps_per_loop'] for c in steps] == [4]
  # 4 steps per dispatch: each case trains a whole number of dispatches
  assert all(c['baseline']['train_steps'] % 4 == 0 for c in steps)


def test_progress_and_summary_table(tiny):
  progress = tiny['_progress']
  names = ['adult', 'cold_start', 'ctr', 'mlp', 'steps_per_loop', 'strategies']
  for i, name in enumerate(names, 1):
    assert f'({i}/6) {name}: start' in progress
  text = run.summary_table(tiny)
  for name, case in _cases(tiny):
    assert case['case'] in text
  assert 'cold start' in text
  for case in tiny['workloads']['cold_start']['cold_cases']:
    assert case['case'] in text
  assert 'strategies:' in text or 'strategies ' in text


def test_schema_names_what_is_wrong(tiny):
  doc = {k: v for k, v in tiny.items() if k != '_progress'}
  bad = copy.deepcopy(doc)
  bad['schema'] = 'jestimator-bench/0'
  del bad['workloads']['mlp']['cases'][0]['baseline']['step_time_ms_p90']
  bad['workloads']['mlp']['cases'][0]['jestimator']['train_examples_per_sec'] = 1e12
  bad['workloads']['ctr']['cases'][0]['ratio'].pop('compile_s')
  errs = _schema.problems(bad)
  assert any('schema must be' in e for e in errs)
  assert any("baseline: missing 'step_time_ms_p90'" in e for e in errs)
  assert any('median outside [min, max]' in e for e in errs)
  assert any('workloads.ctr.cases[0].ratio' in e for e in errs)
  with pytest.raises(ValueError, match='not a valid jestimator-bench/1'):
    _schema.check(bad)


def test_compare_table_ratios(tiny, tmp_path, capsys):
  doc = {k: v for k, v in tiny.items() if k != '_progress'}
  faster = copy.deepcopy(doc)
  for _, case in _cases(faster):
    case['jestimator']['train_examples_per_sec'] *= 2.5
    for k in ('train_examples_per_sec_min', 'train_examples_per_sec_max'):
      case['jestimator'][k] *= 2.5
    case['jestimator']['train_examples_per_sec_repeats'] = [
        v * 2.5 for v in case['jestimator']['train_examples_per_sec_repeats']]
  a, b = tmp_path / 'a.json', tmp_path / 'b.json'
  a.write_text(json.dumps(doc))
  b.write_text(json.dumps(faster))
  assert compare.main([str(a), str(b)]) == 0
  out = capsys.readouterr().out
  case_rows = [line for line in out.splitlines() if line.startswith('| mlp ')]
  assert len(case_rows) == 1
  cells = [c.strip() for c in case_rows[0].strip('|').split('|')]
  # columns: workload, case, A value, A jest/base, B value, B jest/base, B/A
  assert cells[-1] == '2.50'
  mlp = doc['workloads']['mlp']['cases'][0]
  ratio = mlp['jestimator']['train_examples_per_sec'] / mlp['baseline']['train_examples_per_sec']
  assert cells[3] == f'{ratio:.2f}' and cells[5] == f'{2.5 * ratio:.2f}'


def test_compare_rejects_invalid_file(tmp_path):
  path = tmp_path / 'bad.json'
  path.write_text(json.dumps({'schema': 'something-else'}))
  with pytest.raises(ValueError, match='bad.json'):
    compare.load(str(path))


def test_compare_plot_without_matplotlib(tiny, tmp_path, monkeypatch, capsys):
  doc = {k: v for k, v in tiny.items() if k != '_progress'}
  a = tmp_path / 'a.json'
  a.write_text(json.dumps(doc))
  monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import fails as if not installed
  assert compare.main([str(a), '--plot', str(tmp_path / 'p.png')]) == 0
  assert 'matplotlib is not installed' in capsys.readouterr().err
  assert not (tmp_path / 'p.png').exists()


def test_compare_plot_with_matplotlib(tiny, tmp_path):
  pytest.importorskip('matplotlib')
  doc = {k: v for k, v in tiny.items() if k != '_progress'}
  assert compare.plot(['a.json'], [doc], str(tmp_path / 'p.png'))
  assert (tmp_path / 'p.png').stat().st_size > 0


def test_binary_quality_against_hand_computed_values():
  labels = np.array([0, 0, 1, 1, 1])
  probs = np.array([0.1, 0.6, 0.6, 0.8, 0.3])
  q = _measure.binary_quality(labels, probs)
  # Positive/negative pairs: (0.6,0.1) (0.8,0.1) (0.3,0.1) (0.8,0.6) win, (0.6,0.6) ties (1/2),
  # (0.3,0.6) loses: (4 + 0.5) / 6.
  assert q['auc'] == pytest.approx(4.5 / 6)
  assert q['accuracy'] == pytest.approx(3 / 5)  # 0.1 ok, 0.6 wrong, 0.6 ok, 0.8 ok, 0.3 wrong
  expected = -np.mean([math.log(0.9), math.log(0.4), math.log(0.6), math.log(0.8), math.log(0.3)])
  assert q['loss'] == pytest.approx(expected)
  assert _measure.binary_quality(np.ones(3), np.full(3, 0.7))['auc'] is None


def test_clock_syncs_exactly_at_the_plan_boundaries():
  plan = _measure.Plan(warmup=2, window=3, repeats=2, latency=2)
  clock = _measure.Clock(plan=plan)
  synced = [i for i in range(1, plan.dispatches + 1) if clock.sync_now(i)]
  # first, end of warm-up (3), window ends (6, 9), then each latency dispatch (10, 11)
  assert synced == [1, 3, 6, 9, 10, 11]
  assert plan.dispatches == 11 and clock.done(11) and not clock.done(10)


def test_clock_sizes_windows_from_the_warmup():
  budget = _measure.Budget(warmup=2, repeats=2, window_s=1.0, min_window=1, max_window=50,
                           latency_s=0.5, min_latency=1, max_latency=8)
  ticks = iter([0.0, 1.0, 1.25])  # t0, dispatch 1, dispatch 3: 0.125 s per warm-up dispatch
  clock = _measure.Clock(budget=budget, now=lambda: next(ticks))
  assert clock.sync_now(1) and not clock.sync_now(2) and clock.sync_now(3)
  assert clock.plan is None and not clock.done(3)
  clock.record(1)
  clock.record(3)
  # window: ceil(1.0 s / 0.125 s) = 8 dispatches; latency: ceil(0.5 / 0.125) = 4 (cap 8)
  assert clock.plan == _measure.Plan(warmup=2, window=8, repeats=2, latency=4)
  assert [i for i in range(4, 30) if clock.sync_now(i)] == [11, 19, 20, 21, 22, 23]
  assert clock.done(23) and not clock.done(22)


def test_clock_summary_from_known_times():
  plan = _measure.Plan(warmup=1, window=2, repeats=3, latency=4)
  # sync at dispatches 1, 2 (warm-up end), 4, 6, 8 (windows), 9..12 (latency)
  times = {1: 5.0, 2: 6.0, 4: 7.0, 6: 9.0, 8: 9.5, 9: 9.6, 10: 9.8, 11: 9.9, 12: 10.3}
  ticks = iter([1.0] + [times[i] for i in sorted(times)])
  clock = _measure.Clock(plan=plan, now=lambda: next(ticks))
  for i in range(1, plan.dispatches + 1):
    if clock.sync_now(i):
      clock.record(i)
  out = clock.summary(examples_per_dispatch=64, steps_per_dispatch=2)
  # windows of 2 dispatches x 64 examples in 1.0 s, 2.0 s and 0.5 s
  assert out['train_examples_per_sec_repeats'] == pytest.approx([128.0, 64.0, 256.0])
  assert out['train_examples_per_sec'] == pytest.approx(128.0)
  assert (out['train_examples_per_sec_min'], out['train_examples_per_sec_max']) == (
      pytest.approx(64.0), pytest.approx(256.0))
  # dispatch times 0.1, 0.2, 0.1, 0.4 s over 2 steps each: 50, 100, 50, 200 ms per step
  assert out['step_time_ms_p50'] == pytest.approx(np.percentile([50, 100, 50, 200], 50))
  assert out['step_time_ms_p90'] == pytest.approx(np.percentile([50, 100, 50, 200], 90))
  assert out['time_to_first_step_s'] == pytest.approx(4.0)
  assert out['train_steps'] == 2 * 12


@pytest.mark.slow
def test_cli_strategies_on_two_host_devices(tmp_path):
  out = tmp_path / 'strategies.json'
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env.pop('XLA_FLAGS', None)
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.run', '--suite', 'tiny', '--workloads', 'strategies',
       '--host-devices', '2', '--out', str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  doc = compare.load(str(out))
  assert doc['machine']['device_count'] == 2
  cases = doc['workloads']['strategies']['cases']
  assert [c['case'] for c in cases] == ['DataParallel/devices=2', 'Pmap/devices=2']
  for c in cases:
    assert c['jestimator']['devices'] == c['baseline']['devices'] == 2
    assert c['jestimator']['batch_size'] == 2 * doc['workloads']['strategies']['config'][
        'per_device_batch']
  assert 'wrote' in proc.stdout and 'Pmap/devices=2' in proc.stdout  # the summary table
