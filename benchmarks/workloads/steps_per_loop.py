"""`RunConfig.steps_per_loop` 1 / 8 / 64 on the MLP, against a hand-written `lax.scan` loop.

With `steps_per_loop=k` the Estimator runs k steps per device dispatch (`lax.scan`), like
TPUEstimator's `iterations_per_loop`; the baseline for k > 1 is the same scan written by hand over
k batches stacked on the device ahead of time (for k = 1 it is the plain per-step loop). Target on
accelerators: k >= 8 within 5% of the baseline's scan loop.
"""
from __future__ import annotations

from typing import Any, Callable

from benchmarks.workloads import mlp
from benchmarks.workloads._measure import Budget
from benchmarks.workloads._task import run_case

NAME = 'steps_per_loop'
DESCRIPTION = 'steps_per_loop 1/8/64 on the MLP vs a hand-written lax.scan loop'

CONFIGS = {
    # tiny: k = 1 is the mlp workload's path already
    'tiny': {'steps_per_loop': [4], 'batch_size': 16, 'hidden': 16, 'dim': 8,
             'train_rows': 512, 'eval_rows': 100},
    'quick': {'steps_per_loop': [1, 8, 64], 'batch_size': 256, 'hidden': 256, 'dim': 64,
              'train_rows': 65536, 'eval_rows': 8192},
    'full': {'steps_per_loop': [1, 8, 64], 'batch_size': 256, 'hidden': 512, 'dim': 64,
             'train_rows': 262144, 'eval_rows': 65536},
}


def run(config: dict[str, Any], budget: Budget, progress: Callable[[str], None]) -> dict[str, Any]:
  """One case per steps_per_loop value, all at one batch size."""
  task = mlp.make_task(config['hidden'], config['dim'], config['train_rows'], config['eval_rows'])
  b = config['batch_size']
  cases = [run_case(task, f'steps_per_loop={k}', {'steps_per_loop': k, 'batch_size': b,
                                                  'hidden': config['hidden']},
                    b, budget, steps_per_loop=k, progress=progress)
           for k in config['steps_per_loop']]
  return {'cases': cases}
