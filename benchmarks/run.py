"""Runs the benchmark workloads and writes one JSON result (schema `jestimator-bench/1`).

  python -m benchmarks.run [--suite tiny|quick|full] [--workloads adult,mlp] [--out FILE.json]
                           [--host-devices N] [--in-process]

Every workload runs next to a hand-written jitted flax + optax loop in the same process and reports
jestimator / baseline ratios; each workload gets a worker process of its own unless
`--in-process`. Progress goes to stderr; a summary table ends the run. See `benchmarks/README.md`
for what each figure means. From Python: `run_suite('tiny')` returns the document.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import sys
import time
import traceback
from typing import Any, Callable, Sequence

# Nothing here may import jax at module level: `--host-devices` must set XLA_FLAGS first.


class Progress:
  """Progress lines on stderr: elapsed time, which workload (i/n), what it is doing.

  Args:
    stream: where to write (default stderr).
    start: wall-clock (`time.time()`) origin of the elapsed times, so that worker processes
      continue the parent's clock.
    position: `(i, n)` overriding the workload numbering (a worker runs workload i of n).
  """

  def __init__(self, stream=None, start: float | None = None,
               position: tuple[int, int] | None = None):
    self.stream = stream or sys.stderr
    self.t0 = time.time() if start is None else start
    self.position = position
    self.prefix = ''

  def workload(self, i: int, n: int, name: str) -> None:
    i, n = self.position or (i, n)
    self.prefix = f'({i}/{n}) {name}'
    self('start')

  def __call__(self, msg: str) -> None:
    print(f'[{time.time() - self.t0:7.1f}s] {self.prefix}: {msg}', file=self.stream, flush=True)


def run_suite(suite: str = 'quick', workloads: Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None,
              config_overrides: dict[str, dict[str, Any]] | None = None,
              command: str | None = None) -> dict[str, Any]:
  """Runs `workloads` (default: all) at `suite` size in this process; returns the result document.

  Args:
    suite: 'tiny', 'quick' or 'full' (see `benchmarks.workloads`).
    workloads: names from `benchmarks.workloads.WORKLOADS`.
    progress: a `Progress` (or any callable taking a message); None prints to stderr.
    config_overrides: `{workload: {key: value}}` merged over the suite's config.
    command: recorded as the result's `command` (default: this process's argv).

  A workload that raises is recorded with its traceback under `error`; the others still run.
  """
  from benchmarks import _machine
  from benchmarks import workloads as registry
  from benchmarks.workloads import _schema

  if suite not in registry.SUITES:
    raise ValueError(f'suite must be one of {registry.SUITES}, got {suite!r}')
  names = list(workloads or registry.WORKLOADS)
  modules = [registry.get(n) for n in names]  # unknown names fail before anything runs
  progress = progress or Progress()
  budget = registry.BUDGETS[suite]
  t0 = time.perf_counter()
  out: dict[str, Any] = {
      'schema': _schema.SCHEMA, 'suite': suite,
      'created_utc': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
      'command': command or ' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
      'machine': _machine.machine_info(), 'wall_s': None, 'workloads': {}}
  for i, (name, module) in enumerate(zip(names, modules), 1):
    config = {**module.CONFIGS[suite], **(config_overrides or {}).get(name, {})}
    entry: dict[str, Any] = {'description': module.DESCRIPTION, 'config': config,
                             'budget': dataclasses.asdict(budget)}
    if hasattr(progress, 'workload'):
      progress.workload(i, len(names), name)
    w0 = time.perf_counter()
    try:
      entry.update(module.run(config, budget, progress))
    except Exception:  # keep the other workloads' numbers; the traceback says what broke
      entry['error'] = traceback.format_exc()
      progress(f'FAILED:\n{entry["error"]}')
    entry['wall_s'] = time.perf_counter() - w0
    progress(f'done in {entry["wall_s"]:.1f}s')
    out['workloads'][name] = entry
  out['wall_s'] = time.perf_counter() - t0
  return out


# -- the summary table ----------------------------------------------------------------------------
def _fmt(x: Any, spec: str = ',.0f') -> str:
  return '-' if x is None else format(x, spec)


def _quality(run: dict[str, Any]) -> str:
  q = run['quality']
  acc, auc = q.get('accuracy'), q.get('auc')
  return f'{_fmt(acc, ".3f")}/{_fmt(auc, ".3f")}'


def summary_table(result: dict[str, Any]) -> str:
  """A plain-text table: per case, train / eval / predict throughput, ratios, compile, quality."""
  header = ('workload', 'case', 'train ex/s', 'base ex/s', 'ratio', 'step p50 ms', 'p90 ms',
            'eval x', 'pred x', 'compile s', 'ckpt save s', 'RSS MiB', 'acc/auc', 'base acc/auc')
  rows = [header]
  notes = []
  cold = []
  for name, w in result['workloads'].items():
    if 'cold_cases' in w:
      cold.extend(w['cold_cases'])
      continue
    if 'cases' not in w:
      why = w.get('skipped') or 'ERROR: ' + w.get('error', '').strip().splitlines()[-1]
      notes.append(f'{name}: {why}')
      continue
    for c in w['cases']:
      e, b, r = c['jestimator'], c['baseline'], c['ratio']
      rows.append((name, c['case'], _fmt(e['train_examples_per_sec']),
                   _fmt(b['train_examples_per_sec']), _fmt(r['train_examples_per_sec'], '.3f'),
                   f'{_fmt(e["step_time_ms_p50"], ".2f")}/{_fmt(b["step_time_ms_p50"], ".2f")}',
                   _fmt(e['step_time_ms_p90'], '.2f'),
                   _fmt(r['eval_examples_per_sec'], '.2f'),
                   _fmt(r['predict_examples_per_sec'], '.2f'),
                   f'{_fmt(e["compile_s"], ".1f")}/{_fmt(b["compile_s"], ".1f")}',
                   _fmt(e['checkpoint_save_s'], '.2f'), _fmt(e['peak_host_rss_mib']),
                   _quality(e), _quality(b)))
  widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
  lines = ['  '.join(str(v).ljust(w) if j < 2 else str(v).rjust(w)
                     for j, (v, w) in enumerate(zip(row, widths))) for row in rows]
  lines.insert(1, '  '.join('-' * w for w in widths))
  m = result['machine']
  lines.insert(0, f"suite {result['suite']} on {m['backend']} x{m['device_count']} "
                  f"({m['device_kind']}), {m['host_cores']} host cores; "
                  f"wall {result['wall_s']:.0f}s")
  lines.append('ratio = jestimator/baseline training examples/sec; eval x, pred x: the same for '
               'evaluate/predict; a/b columns: jestimator/baseline')
  lines.extend(notes)
  if cold:
    lines.append(cold_table(cold))
  return '\n'.join(lines)


def cold_table(cases: list[dict[str, Any]]) -> str:
  """Fresh-process first `train()`: seconds, compilations (cache hits), peak RSS per runner."""
  header = ('cold start', 'jestimator s', 'cached s', 'baseline s', 'x base', 'cached x base',
            'compiles j/c/b', 'RSS MiB j/b')
  rows = [header]
  for c in cases:
    j, k, b, r = c['jestimator'], c['jestimator_cached'], c['baseline'], c['ratio']
    rows.append((c['case'], _fmt(j['first_train_s'], '.2f'), _fmt(k['first_train_s'], '.2f'),
                 _fmt(b['first_train_s'], '.2f'), _fmt(r['jestimator/first_train_s'], '.2f'),
                 _fmt(r['jestimator_cached/first_train_s'], '.2f'),
                 f"{j['compilations']}/{k['compilations']} ({k['cache_hits']} hits)/"
                 f"{b['compilations']}",
                 f"{_fmt(j['peak_host_rss_mib'])}/{_fmt(b['peak_host_rss_mib'])}"))
  widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
  lines = ['  '.join(str(v).ljust(w) if j == 0 else str(v).rjust(w)
                     for j, (v, w) in enumerate(zip(row, widths))) for row in rows]
  lines.insert(1, '  '.join('-' * w for w in widths))
  lines.insert(0, '')
  lines.append('seconds from a fresh process\'s first line to the end of its first train() '
               '(imports, data, build included); cached: a second process reusing the '
               'persistent compilation cache')
  return '\n'.join(lines)


def run_isolated(suite: str, names: Sequence[str], progress: Progress) -> dict[str, Any]:
  """Runs each workload in its own worker process and merges their documents.

  A fresh process per workload gives each one a clean heap (its peak RSS is its own), cold
  compilation caches and a device memory peak of its own; the parent never starts a JAX backend,
  so a GPU's memory is the worker's alone.
  """
  import subprocess
  import tempfile

  from benchmarks import workloads as registry
  from benchmarks.workloads import _schema

  for name in names:
    registry.get(name)  # unknown names fail before anything runs
  t0 = time.perf_counter()
  out: dict[str, Any] = {
      'schema': _schema.SCHEMA, 'suite': suite,
      'created_utc': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
      'command': ' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
      'machine': None, 'wall_s': None, 'workloads': {}}
  with tempfile.TemporaryDirectory(prefix='bench_') as tmp:
    for i, name in enumerate(names, 1):
      path = os.path.join(tmp, f'{name}.json')
      cmd = [sys.executable, '-m', 'benchmarks.run', '--suite', suite, '--workloads', name,
             '--out', path, '--in-process', '--no-summary', '--position', f'{i}/{len(names)}',
             '--clock-start', repr(progress.t0)]
      rc = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                          ).returncode
      if os.path.exists(path):
        with open(path) as f:
          part = json.load(f)
        out['machine'] = out['machine'] or part['machine']
        out['workloads'][name] = part['workloads'][name]
      else:
        module = registry.get(name)
        out['workloads'][name] = {
            'description': module.DESCRIPTION, 'config': module.CONFIGS[suite],
            'error': f'the worker process exited with status {rc} without a result (crashed or '
                     'ran out of memory?); its output is above'}
  if out['machine'] is None:
    from benchmarks import _machine
    out['machine'] = _machine.machine_info()
  out['wall_s'] = time.perf_counter() - t0
  return out


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.run',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--suite', default='quick', choices=('tiny', 'quick', 'full'))
  parser.add_argument('--workloads', default=None,
                      help='comma-separated subset of: adult, ctr, mlp, steps_per_loop, strategies')
  parser.add_argument('--out', default=None,
                      help='result file (default benchmarks/results/<suite>_<backend>.json)')
  parser.add_argument('--host-devices', type=int, default=None,
                      help='split the CPU into N XLA devices (to try the strategies workload '
                           'on a CPU)')
  parser.add_argument('--in-process', action='store_true',
                      help='run every workload in this process (default: one worker process '
                           'per workload, so memory peaks and caches are per workload)')
  parser.add_argument('--no-summary', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--position', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--clock-start', type=float, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.host_devices:
    # Read when the backend starts, so this must happen before any JAX computation (workers
    # inherit the environment).
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={args.host_devices}')
  names = [n.strip() for n in args.workloads.split(',') if n.strip()] if args.workloads else None
  position = tuple(int(v) for v in args.position.split('/')) if args.position else None
  progress = Progress(start=args.clock_start, position=position)
  if args.in_process:
    result = run_suite(args.suite, names, progress)
  else:
    from benchmarks import workloads as registry
    result = run_isolated(args.suite, names or list(registry.WORKLOADS), progress)

  from benchmarks.workloads import _schema
  _schema.check(result)
  out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                 f'{args.suite}_{result["machine"]["backend"]}.json')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'w') as f:
    json.dump(result, f, indent=1)
  if not args.no_summary:
    print(summary_table(result))
    print(f'wrote {out}')
  return 1 if any('error' in w for w in result['workloads'].values()) else 0


if __name__ == '__main__':
  sys.exit(main())
