"""The benchmark workloads, one module each, and the suites that size them.

Each workload module has `NAME`, `DESCRIPTION`, `CONFIGS` (`{suite: config dict}`) and
`run(config, budget, progress) -> {'cases': [...]}` (or `{'skipped': reason}`); every case holds a
`jestimator` and a `baseline` result dict and their `ratio`s (see `_task.run_case`). `cold_start`
returns `{'cold_cases': [...]}` instead: fresh-process figures (see its docstring).

Suites: `tiny` (seconds; the tests), `quick` (under 5 minutes on a 2-core CPU), `full` (the
numbers to publish; tens of minutes on a CPU).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from benchmarks.workloads._measure import Budget

#: Workload names in the order the harness runs them.
WORKLOADS = ('adult', 'cold_start', 'ctr', 'mlp', 'steps_per_loop', 'strategies')

SUITES = ('tiny', 'quick', 'full')

#: Time budget of each case's baseline (the Estimator replays the plan the baseline settles on).
BUDGETS = {
    'tiny': Budget(warmup=1, repeats=2, window_s=0.0, min_window=1, max_window=2,
                   latency_s=0.0, min_latency=2, max_latency=2),
    'quick': Budget(warmup=5, repeats=3, window_s=0.8, min_window=4, max_window=2000,
                    latency_s=0.4, min_latency=5, max_latency=100),
    'full': Budget(warmup=20, repeats=5, window_s=3.0, min_window=5, max_window=20000,
                   latency_s=2.0, min_latency=20, max_latency=500),
}


def get(name: str) -> ModuleType:
  """The workload module called `name` (ValueError naming the known ones otherwise)."""
  if name not in WORKLOADS:
    raise ValueError(f'unknown workload {name!r}; known: {", ".join(WORKLOADS)}')
  return importlib.import_module(f'benchmarks.workloads.{name}')
