"""Estimator overhead: the same MLP trained by `Estimator.train` and by a hand-written loop.

Both consume the same host (numpy) batches in one process. Prints steady-state examples/sec of
each and the ratio, for steps_per_loop 1 and 16, and writes `benchmarks/results/overhead_<backend>.json`.

  python -m benchmarks.overhead [--steps 600] [--batch 256] [--hidden 512]

Target: the Estimator within 5% of the hand-written loop at steps_per_loop=1, faster at 16.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import flax.linen as nn
import jax
import numpy as np
import optax

import jestimator as je
from benchmarks._machine import machine_info, write_results


def make_data(n: int, dim: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim)).astype(np.float32)
  y = (x[:, :8].sum(1) > 0).astype(np.float32)
  return x, y


class MLP(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(1)(x)[:, 0]


def model_fn_for(hidden: int):
  def model_fn(features, labels, mode):
    logits = MLP(hidden, name='mlp')(features['x'])
    loss = None
    if labels is not None:
      loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    return je.EstimatorSpec(mode, predictions={'logits': logits}, loss=loss,
                            optimizer=optax.adam(1e-3))
  return model_fn


class _Timer(je.hooks.Hook):
  """Times the steps after `start` by fetching the loss (a device sync) at both ends."""

  def __init__(self, first: int, last: int):
    self.first, self.last = first, last
    self.t0 = self.t1 = None

  def before_step(self, ctx):
    return ['loss'] if ctx.crossed(self.first) or ctx.step >= self.last else None

  def after_step(self, ctx, values):
    if 'loss' not in values:
      return
    if self.t0 is None and ctx.step >= self.first:
      self.t0, self.s0 = time.perf_counter(), ctx.step
    elif self.t0 is not None and ctx.step >= self.last:
      self.t1, self.s1 = time.perf_counter(), ctx.step


def run_estimator(x, y, batch: int, hidden: int, steps: int, steps_per_loop: int) -> float:
  warm = max(64, 4 * steps_per_loop)
  model_dir = tempfile.mkdtemp(prefix='overhead_')
  config = je.RunConfig(steps_per_loop=steps_per_loop, save_checkpoints_steps=10**9,
                        log_step_count_steps=10**9, save_summary_steps=10**9)
  est = je.Estimator(model_fn_for(hidden), model_dir, config=config)
  input_fn = je.inputs.numpy_input_fn({'x': x}, y, batch_size=batch, num_epochs=None,
                                      shuffle=False)
  timer = _Timer(warm, warm + steps)
  est.train(input_fn, hooks=[timer], max_steps=warm + steps)
  return (timer.s1 - timer.s0) * batch / (timer.t1 - timer.t0)


def run_handwritten(x, y, batch: int, hidden: int, steps: int) -> float:
  model = MLP(hidden)
  opt = optax.adam(1e-3)
  params = model.init(jax.random.PRNGKey(0), x[:batch])['params']
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, xb, yb):
    def loss_fn(p):
      return optax.sigmoid_binary_cross_entropy(model.apply({'params': p}, xb), yb).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  n = len(x) // batch
  batches = [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(n)]
  warm = 64
  for i in range(warm):
    params, opt_state, loss = step(params, opt_state, *batches[i % n])
  loss.block_until_ready()
  t0 = time.perf_counter()
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, *batches[i % n])
  loss.block_until_ready()
  return steps * batch / (time.perf_counter() - t0)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=600)
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--hidden', type=int, default=512)
  parser.add_argument('--dim', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv)
  x, y = make_data(args.batch * 64, args.dim)
  results = {'machine': machine_info(), 'config': vars(args), 'runs': []}
  for spl in (1, 16):
    est = [run_estimator(x, y, args.batch, args.hidden, args.steps, spl)
           for _ in range(args.repeats)]
    hand = [run_handwritten(x, y, args.batch, args.hidden, args.steps)
            for _ in range(args.repeats)]
    e, h = float(np.median(est)), float(np.median(hand))
    results['runs'].append({'steps_per_loop': spl, 'estimator_examples_per_sec': e,
                            'handwritten_examples_per_sec': h, 'ratio': e / h,
                            'estimator_all': est, 'handwritten_all': hand})
    print(f'steps_per_loop={spl:2d}: estimator {e:12,.0f} ex/s   hand-written {h:12,.0f} ex/s'
          f'   ratio {e / h:.3f}')
  out = args.out or os.path.join(os.path.dirname(__file__), 'results',
                                 f'overhead_{jax.default_backend()}.json')
  write_results(results, out)


if __name__ == '__main__':
  main()
