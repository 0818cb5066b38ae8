"""Side-by-side table of benchmark results (CPU vs GPU vs TPU, or before / after a change).

  python -m benchmarks.compare A.json B.json [...] [--metric train_examples_per_sec]
                               [--runner jestimator] [--plot out.png]

For every (workload, case) found in any file the table shows, per file, the chosen metric of the
chosen runner and that file's jestimator/baseline ratio, then each later file's value divided by
the first file's (`B/A`: above 1 means B's number is larger). The table is Markdown, so it can be
pasted into `benchmarks/README.md`. `--plot` draws training throughput against batch size (the
`mlp` workload) and against device count (`strategies`) when matplotlib is installed
(`pip install -e '.[plot]'`); without it the plot is skipped with a note.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from benchmarks.workloads import _schema

# Metrics where smaller is better (the README explains each).
TIMES = ('step_time_ms_p50', 'step_time_ms_p90', 'compile_s', 'time_to_first_step_s',
         'checkpoint_save_s', 'checkpoint_restore_s')


def load(path: str) -> dict[str, Any]:
  """Reads and validates one result file (ValueError naming the file and the problems)."""
  with open(path) as f:
    result = json.load(f)
  errs = _schema.problems(result)
  if errs:
    raise ValueError(f'{path} is not a valid {_schema.SCHEMA} result:\n  ' + '\n  '.join(errs))
  return result


def label(path: str, result: dict[str, Any]) -> str:
  """`stem (backend device_kind xN)`, e.g. `quick_cpu (cpu cpu x1)`."""
  m = result['machine']
  stem = os.path.splitext(os.path.basename(path))[0]
  return f"{stem} ({m['backend']} {m['device_kind']} x{m['device_count']})"


def value(run: dict[str, Any], metric: str) -> float | None:
  """`run[metric]`; `quality.auc`-style dotted names reach into nested dicts."""
  v: Any = run
  for part in metric.split('.'):
    if not isinstance(v, dict) or part not in v:
      return None
    v = v[part]
  return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def rows(results: Sequence[dict[str, Any]], metric: str, runner: str
         ) -> list[tuple[str, str, list[float | None], list[float | None]]]:
  """`(workload, case, values per file, jestimator/baseline ratio per file)`, first seen first."""
  keys: list[tuple[str, str]] = []
  for r in results:
    for name, w in r['workloads'].items():
      for c in w.get('cases', []):
        if (name, c['case']) not in keys:
          keys.append((name, c['case']))
  out = []
  for name, case in keys:
    values, ratios = [], []
    for r in results:
      c = next((c for c in r['workloads'].get(name, {}).get('cases', []) if c['case'] == case),
               None)
      if c is None:
        values.append(None)
        ratios.append(None)
        continue
      values.append(value(c[runner], metric))
      e, b = value(c['jestimator'], metric), value(c['baseline'], metric)
      ratios.append(e / b if e is not None and b else None)
    out.append((name, case, values, ratios))
  return out


def _fmt(v: float | None, ratio: bool = False) -> str:
  if v is None:
    return '-'
  if ratio:
    return f'{v:.2f}'
  return f'{v:,.0f}' if abs(v) >= 100 else f'{v:.3g}'


def table(paths: Sequence[str], results: Sequence[dict[str, Any]],
          metric: str = 'train_examples_per_sec', runner: str = 'jestimator') -> str:
  """The Markdown comparison table (see the module docstring)."""
  labels = [label(p, r) for p, r in zip(paths, results)]
  short = [chr(ord('A') + i) if i < 26 else str(i) for i in range(len(results))]
  header = ['workload', 'case']
  for s in short:
    header += [f'{s}: {runner}', f'{s}: jest/base']
  header += [f'{s}/A' for s in short[1:]]
  lines = [f'{metric} ({runner}; ' + ('smaller is better' if metric.split('.')[-1] in TIMES
                                     else 'larger is better') + ')',
           *[f'  {s} = {lab}' for s, lab in zip(short, labels)], '']
  body = []
  for name, case, values, ratios in rows(results, metric, runner):
    row = [name, case]
    for v, r in zip(values, ratios):
      row += [_fmt(v), _fmt(r, ratio=True)]
    a = values[0]
    row += [_fmt(v / a if v is not None and a else None, ratio=True) for v in values[1:]]
    body.append(row)
  widths = [max(len(x) for x in col) for col in zip(header, *body)]
  fmt = lambda row: '| ' + ' | '.join(x.ljust(w) if i < 2 else x.rjust(w)
                                       for i, (x, w) in enumerate(zip(row, widths))) + ' |'
  lines.append(fmt(header))
  lines.append('|' + '|'.join('-' * (w + 1) + (':' if i >= 2 else '-')
                              for i, w in enumerate(widths)) + '|')
  lines.extend(fmt(r) for r in body)
  for p, r in zip(paths, results):
    for name, w in r['workloads'].items():
      if 'cases' not in w and 'cold_cases' not in w:  # cold starts have a table of their own
        why = w.get('skipped') or 'error (see the file)'
        lines.append(f'{os.path.basename(p)}: {name} not run: {why}')
  return '\n'.join(lines) + '\n'


def plot(paths: Sequence[str], results: Sequence[dict[str, Any]], out: str) -> bool:
  """Throughput vs batch size (mlp) and vs devices (strategies); False without matplotlib."""
  try:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
  markers = 'osd^v<>'
  for i, (p, r) in enumerate(zip(paths, results)):
    lab = label(p, r)
    mlp = r['workloads'].get('mlp', {}).get('cases', [])
    # one colour per file; solid = jestimator, dashed = baseline
    for runner, style in (('jestimator', '-o'), ('baseline', '--x')):
      pts = sorted((c['params']['batch_size'], c[runner]['train_examples_per_sec']) for c in mlp)
      if pts:
        ax1.plot(*zip(*pts), style, color=f'C{i}', label=f'{lab} {runner}')
    strat = r['workloads'].get('strategies', {}).get('cases', [])
    names = sorted({c['params']['strategy'] for c in strat} - {'SingleDevice'})
    for j, name in enumerate(names):
      for runner, line in (('jestimator', '-'), ('baseline', '--')):
        if runner == 'baseline' and j:
          continue  # one baseline line per file: it does not depend on the strategy
        pts = sorted((c['params']['devices'], c[runner]['train_examples_per_sec'])
                     for c in strat if c['params']['strategy'] in (name, 'SingleDevice'))
        ax2.plot(*zip(*pts), line + markers[j % len(markers)], color=f'C{i}',
                 label=f'{lab} {name if runner == "jestimator" else "baseline"}')
  ax1.set(xscale='log', yscale='log', xlabel='batch size', ylabel='training examples/sec',
          title='MLP: throughput vs batch size')
  ax2.set(xlabel='devices', ylabel='training examples/sec',
          title='strategies: throughput vs devices (weak scaling)')
  for ax in (ax1, ax2):
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize='small')
    else:
      ax.text(0.5, 0.5, 'no data', ha='center', va='center', transform=ax.transAxes)
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return True


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.compare',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('files', nargs='+', help='result JSON files written by benchmarks.run')
  parser.add_argument('--metric', action='append', default=None,
                      help='figure to compare (repeatable; default train_examples_per_sec), '
                           'e.g. step_time_ms_p50, eval_examples_per_sec, quality.auc')
  parser.add_argument('--runner', default='jestimator', choices=('jestimator', 'baseline'))
  parser.add_argument('--plot', default=None, metavar='OUT.png')
  args = parser.parse_args(argv)
  results = [load(p) for p in args.files]
  for metric in args.metric or ['train_examples_per_sec']:
    print(table(args.files, results, metric, args.runner))
  if args.plot:
    if plot(args.files, results, args.plot):
      print(f'wrote {args.plot}')
    else:
      print('matplotlib is not installed (pip install -e ".[plot]"); no plot drawn',
            file=sys.stderr)
  return 0


if __name__ == '__main__':
  sys.exit(main())
