"""Examples/sec against the number of devices for each strategy, with a correctness check.

For each device count n (1, 2, 4, ... and all devices) and each strategy (`Pmap`,
`DataParallel`), an MLP `model_fn` trains with plain SGD on a global batch of
`per_device_batch * n` rows (weak scaling). Next to it, `SingleDevice` trains on the same global
batch, which gives
  * the correctness figure: max |params - single-device params| after the same steps (plain SGD,
    so a gradient scaled by the device count cannot hide; expected <= 1e-5), and
  * the speed-up over one device at the same global batch.
Throughput is timed over `--steps` steps after a warm-up (compilation excluded) through the
public `Estimator` API, the final checkpoint save excluded.

On a CPU the host is split into `--host-devices` XLA devices that share its cores: the figures
then check correctness and overheads, not speed. On a multi-GPU machine the same script measures
real scaling.

  python benchmarks/scaling.py [--host-devices 8] [--steps 50] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--host-devices', type=int, default=8,
                 help='XLA devices to split a CPU host into (ignored by GPUs/TPUs)')
  p.add_argument('--per-device-batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=50, help='timed steps per case')
  p.add_argument('--hidden', type=int, default=256)
  p.add_argument('--dim', type=int, default=32)
  p.add_argument('--strategies', default='Pmap,DataParallel')
  p.add_argument('--out', default=None, help='result JSON (default: print only)')
  return p.parse_args(argv)


ARGS = _parse(sys.argv[1:]) if __name__ == '__main__' else None
if ARGS is not None and 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS',
                                                                                    ''):
  # Must precede JAX's start; only the CPU backend reads it.
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_force_host_platform_device_count={ARGS.host_devices}')

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jestimator as je  # noqa: E402
from jestimator import distributed as jd  # noqa: E402
from jestimator.hooks import Hook  # noqa: E402
from benchmarks.workloads.strategies import device_counts  # noqa: E402


def make_model_fn(hidden: int):
  def model_fn(features, labels, mode):
    h = nn.relu(nn.Dense(hidden)(features['x']))
    h = nn.relu(nn.Dense(hidden)(h))
    logits = nn.Dense(1)(h)[:, 0]
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
    return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.05),
                            predictions={'logits': logits})
  return model_fn


class _Timer(Hook):
  """Wall time from the first timed dispatch to the device finishing the last one."""

  def __init__(self, last_step: int):
    self.last_step, self.t_start, self.t_end = last_step, None, None

  def before_step(self, ctx):
    if self.t_start is None:
      self.t_start = time.perf_counter()
    return ['loss'] if ctx.step >= self.last_step else None  # fetching it waits for the device

  def after_step(self, ctx, values):
    if ctx.step >= self.last_step:
      self.t_end = time.perf_counter()


def run_case(model_fn, strategy, x, y, batch: int, steps: int) -> dict:
  with tempfile.TemporaryDirectory(prefix='jestimator_scaling_') as model_dir:
    return _run_case(model_fn, strategy, x, y, batch, steps, model_dir)


def _run_case(model_fn, strategy, x, y, batch, steps, model_dir) -> dict:
  est = je.Estimator(model_fn, model_dir, config=je.RunConfig(
      strategy=strategy, seed=0, log_step_count_steps=10**9, save_summary_steps=10**9))
  input_fn = je.inputs.numpy_input_fn({'x': x}, y, batch_size=batch, num_epochs=None,
                                      shuffle=False)
  est.train(input_fn, max_steps=2)  # compile and warm up
  timer = _Timer(2 + steps)
  est.train(input_fn, hooks=[timer], max_steps=2 + steps)
  seconds = timer.t_end - timer.t_start
  params = {k: est.get_variable_value(k) for k in est.get_variable_names()
            if k.startswith('params/')}
  return {'examples_per_sec': round(steps * batch / seconds, 1),
          'ms_per_step': round(1e3 * seconds / steps, 3), 'params': params}


def main(args) -> dict:
  devices = jax.local_devices()
  rng = np.random.default_rng(0)
  rows = args.per_device_batch * len(devices) * 4
  x = rng.normal(size=(rows, args.dim)).astype(np.float32)
  y = (x @ rng.normal(size=args.dim) > 0).astype(np.float32)
  model_fn = make_model_fn(args.hidden)
  strategies = {'Pmap': jd.Pmap, 'DataParallel': lambda devs: jd.DataParallel(devices=devs)}
  cases = []
  for n in device_counts(len(devices)):
    batch = args.per_device_batch * n
    single = run_case(model_fn, jd.SingleDevice(devices[0]), x, y, batch, args.steps)
    cases.append({'strategy': 'SingleDevice', 'devices': 1, 'global_batch': batch,
                  'examples_per_sec': single['examples_per_sec'],
                  'ms_per_step': single['ms_per_step']})
    print(f'n={n} batch={batch} SingleDevice: {single["examples_per_sec"]:.0f} ex/s', flush=True)
    for name in args.strategies.split(','):
      got = run_case(model_fn, strategies[name](devices[:n]), x, y, batch, args.steps)
      diff = max(float(np.max(np.abs(got['params'][k] - single['params'][k])))
                 for k in single['params'])
      cases.append({'strategy': name, 'devices': n, 'global_batch': batch,
                    'examples_per_sec': got['examples_per_sec'], 'ms_per_step': got['ms_per_step'],
                    'speedup_vs_single_device_same_batch': round(
                        got['examples_per_sec'] / single['examples_per_sec'], 3),
                    'max_abs_param_diff_vs_single_device': diff})
      print(f'n={n} batch={batch} {name}: {got["examples_per_sec"]:.0f} ex/s, '
            f'max |dparams| = {diff:.2e}', flush=True)
  fake = devices[0].platform == 'cpu' and len(devices) > 1
  return {
      'benchmark': 'jestimator.distributed strategies: examples/sec against device count',
      'note': ('fake CPU devices sharing the host cores: the figures check correctness '
               '(max_abs_param_diff_vs_single_device <= 1e-5) and overheads, not speed')
              if fake else 'real devices',
      'method': (f'MLP {args.dim}-{args.hidden}-{args.hidden}-1, plain SGD, per-device batch '
                 f'{args.per_device_batch} (weak scaling), {args.steps} timed steps after 2 '
                 'warm-up steps, steps_per_loop=1, through Estimator.train'),
      'machine': {'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
                  'local_devices': len(devices), 'host_cores': os.cpu_count(),
                  'load_average_1min': round(os.getloadavg()[0], 2),
                  'jax': jax.__version__, 'python': sys.version.split()[0]},
      'max_abs_param_diff_overall': max(c.get('max_abs_param_diff_vs_single_device', 0.0)
                                        for c in cases),
      'cases': cases,
  }


if __name__ == '__main__':
  result = main(ARGS)
  if ARGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(ARGS.out)), exist_ok=True)
    with open(ARGS.out, 'w') as f:
      json.dump(result, f, indent=1)
    print('wrote', ARGS.out)
