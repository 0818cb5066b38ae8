"""Distribution strategies x device counts on the MLP (only where more than one device exists).

For each device count n (1, 2, 4, ... and all devices) the global batch is `per_device_batch * n`
(weak scaling). n = 1 runs the default `SingleDevice`; n > 1 runs `DataParallel` (jit over a mesh)
and `Pmap`. The baseline is a hand-written `jax.jit` step with the batch sharded over a 1-D mesh
of the same n devices and the state replicated. Each case also reports the scaling efficiency
`(examples/sec at n) / (n * examples/sec at 1)` of both runners (target >= 0.9 on GPUs).

On a CPU, `python -m benchmarks.run --host-devices 4 --workloads strategies` splits the host
into 4 XLA devices to exercise the code (the cores are shared, so expect no speed-up).
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from benchmarks.workloads import mlp
from benchmarks.workloads._measure import Budget
from benchmarks.workloads._task import run_case

NAME = 'strategies'
DESCRIPTION = 'strategies x device counts on the MLP (weak scaling), when > 1 device'

CONFIGS = {
    'tiny': {'strategies': ['DataParallel', 'Pmap'], 'device_counts': [2],
             'per_device_batch': 8, 'hidden': 16, 'dim': 8, 'train_rows': 512, 'eval_rows': 100},
    'quick': {'strategies': ['DataParallel', 'Pmap'], 'device_counts': None,
              'per_device_batch': 256, 'hidden': 256, 'dim': 64, 'train_rows': 65536,
              'eval_rows': 16384},
    'full': {'strategies': ['DataParallel', 'Pmap'], 'device_counts': None,
             'per_device_batch': 1024, 'hidden': 512, 'dim': 64, 'train_rows': 262144,
             'eval_rows': 65536},
}


def device_counts(n: int) -> list[int]:
  """1, 2, 4, ... up to n, and n itself: `device_counts(6) == [1, 2, 4, 6]`."""
  counts, k = [], 1
  while k < n:
    counts.append(k)
    k *= 2
  return counts + [n]


def _strategy(name: str, devices):
  from jestimator import distributed
  if name == 'DataParallel':
    return distributed.DataParallel(devices=devices)
  if name == 'Pmap':
    return distributed.Pmap(devices=devices)
  raise ValueError(f"strategies must name 'DataParallel' or 'Pmap', got {name!r}")


def run(config: dict[str, Any], budget: Budget, progress: Callable[[str], None]) -> dict[str, Any]:
  """Cases `SingleDevice/devices=1` and `<strategy>/devices=<n>`; skipped with one device."""
  devices = jax.devices()
  if jax.process_count() > 1:
    return {'skipped': 'multi-process runs are not benchmarked by this harness yet'}
  if len(devices) < 2:
    return {'skipped': f'needs more than one device; the {jax.default_backend()} backend offers '
                       f'{len(devices)} (on a CPU try --host-devices 4)'}
  counts = [n for n in (config.get('device_counts') or device_counts(len(devices)))
            if n <= len(devices)]
  task = mlp.make_task(config['hidden'], config['dim'], config['train_rows'], config['eval_rows'])
  per = config['per_device_batch']
  cases = []
  for n in counts:
    for name in (['SingleDevice'] if n == 1 else config['strategies']):
      devs = devices[:n]
      strategy = None if name == 'SingleDevice' else _strategy(name, devs)
      cases.append(run_case(task, f'{name}/devices={n}',
                            {'strategy': name, 'devices': n, 'batch_size': per * n,
                             'per_device_batch': per},
                            per * n, budget, strategy=strategy, devices=devs, progress=progress))
  single = next((c for c in cases if c['params']['devices'] == 1), None)
  for c in cases:
    n = c['params']['devices']
    c['scaling_efficiency'] = {
        r: (c[r]['train_examples_per_sec'] / (n * single[r]['train_examples_per_sec'])
            if single else None) for r in ('jestimator', 'baseline')}
  return {'cases': cases}
