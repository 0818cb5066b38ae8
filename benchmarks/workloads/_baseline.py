"""The hand-written baseline: a plain jitted flax + optax loop over device-ready arrays.

What a careful user writes without a framework: data pre-processed once into numeric arrays and
placed on the device(s) up front as fixed batches (cycled), one `jax.jit` train step (or a
`lax.scan` over `steps_per_loop` steps), a jitted eval step folding loss / accuracy sums, and a
jitted forward pass for predictions. Checkpoints through Orbax's `StandardCheckpointer`.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from benchmarks.workloads import _measure

# At most this many distinct training batches (groups, with steps_per_loop > 1) live on the
# device; the loop cycles over them.
_MAX_GROUPS = 64


def _placement(devices: Sequence[Any] | None):
  """`(put_batch, put_state, stacked_put)`: device_put functions for batches and state."""
  if not devices or len(devices) == 1:
    device = devices[0] if devices else jax.local_devices()[0]
    put = lambda tree: jax.device_put(tree, device)
    return put, put, put
  mesh = Mesh(np.array(devices), ('data',))
  batch = NamedSharding(mesh, P('data'))
  stacked = NamedSharding(mesh, P(None, 'data'))  # [steps_per_loop, batch, ...]
  replicated = NamedSharding(mesh, P())
  return (lambda t: jax.device_put(t, batch), lambda t: jax.device_put(t, replicated),
          lambda t: jax.device_put(t, stacked))


def _train_groups(x, y, batch: int, spl: int, seed: int = 0):
  """Shuffled `(features, labels)` groups of `spl` batches (stacked on axis 0 when spl > 1)."""
  n = len(y)
  per_group = batch * spl
  groups = max(1, min(_MAX_GROUPS, math.ceil(n / per_group)))
  rng = np.random.default_rng(seed)
  need = groups * per_group
  index = np.concatenate([rng.permutation(n) for _ in range(math.ceil(need / n))])[:need]
  shape = (groups, spl, batch) if spl > 1 else (groups, batch)
  index = index.reshape(shape)
  return [({k: v[i] for k, v in x.items()}, y[i]) for i in index]


def _eval_batches(x, y, batch: int):
  """Batches of `batch` rows; the last one padded with zero rows, and a [batch] 0/1 mask."""
  n = len(y)
  out = []
  for s in range(0, n, batch):
    e = min(s + batch, n)
    pad = batch - (e - s)
    fx = {k: np.concatenate([v[s:e], np.zeros((pad,) + v.shape[1:], v.dtype)]) if pad else v[s:e]
          for k, v in x.items()}
    fy = np.concatenate([y[s:e], np.zeros(pad, y.dtype)]) if pad else y[s:e]
    mask = np.concatenate([np.ones(e - s, np.float32), np.zeros(pad, np.float32)])
    out.append((fx, fy, mask))
  return out


def run(task, batch_size: int, budget: _measure.Budget, steps_per_loop: int = 1,
        devices: Sequence[Any] | None = None) -> dict[str, Any]:
  """Trains, evaluates, predicts and checkpoints `task` by hand; returns figures and the `plan`."""
  _measure.reset_peak_rss()
  module, opt = task.module, task.optimizer
  put_batch, put_state, put_stacked = _placement(devices)
  y_train = np.asarray(task.base_train_y, np.float32)
  groups = _train_groups(task.base_train_x, y_train, batch_size, steps_per_loop)
  groups = [(put_stacked if steps_per_loop > 1 else put_batch)(g) for g in groups]
  evals = [put_batch(b) for b in _eval_batches(task.base_eval_x,
                                               np.asarray(task.base_eval_y, np.float32),
                                               batch_size)]

  def loss_fn(params, x, y):
    return optax.sigmoid_binary_cross_entropy(module.apply({'params': params}, x), y).mean()

  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def loop(params, opt_state, xs, ys):
    def body(carry, batch):
      p, o, loss = step(*carry, *batch)
      return (p, o), loss
    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ys))
    return params, opt_state, losses[-1]

  train = jax.jit(loop if steps_per_loop > 1 else step)

  clock = _measure.Clock(budget=budget)
  with _measure.CompileTimer() as compile_timer:
    clock.start()
    first_x = jax.tree.map(lambda a: a[0], groups[0][0]) if steps_per_loop > 1 else groups[0][0]
    params = put_state(jax.jit(module.init)(jax.random.PRNGKey(0), first_x)['params'])
    opt_state = put_state(jax.jit(opt.init)(params))
    i = 0
    while not clock.done(i):
      i += 1
      params, opt_state, loss = train(params, opt_state, *groups[(i - 1) % len(groups)])
      if clock.sync_now(i):
        float(loss)
        clock.record(i)
  result = clock.summary(batch_size * steps_per_loop, steps_per_loop)
  result['compile_s'] = compile_timer.seconds
  result['plan'] = clock.plan

  @jax.jit
  def eval_step(params, acc, x, y, mask):
    logits = module.apply({'params': params}, x)
    loss = optax.sigmoid_binary_cross_entropy(logits, y)
    correct = ((logits > 0) == (y > 0.5)).astype(jnp.float32)
    return acc + jnp.stack([(loss * mask).sum(), (correct * mask).sum(), mask.sum()])

  @jax.jit
  def predict_step(params, x):
    return jax.nn.sigmoid(module.apply({'params': params}, x))

  def evaluate():
    acc = jnp.zeros(3)
    for x, y, mask in evals:
      acc = eval_step(params, acc, x, y, mask)
    return np.asarray(acc)

  def predict():
    outs = [predict_step(params, x) for x, _, _ in evals]  # dispatch all, then fetch
    return np.concatenate([np.asarray(o) for o in outs])

  n_eval = len(task.base_eval_y)
  evaluate()
  t = time.perf_counter()
  sums = evaluate()
  result['eval_examples_per_sec'] = n_eval / (time.perf_counter() - t)
  predict()
  t = time.perf_counter()
  probs = predict()[:n_eval]
  result['predict_examples_per_sec'] = n_eval / (time.perf_counter() - t)
  quality = _measure.binary_quality(task.base_eval_y, probs)
  # The loss and accuracy folded on device must agree with the host-side ones from predict.
  quality['loss'], quality['accuracy'] = float(sums[0] / sums[2]), float(sums[1] / sums[2])
  result['quality'] = quality

  result.update(_checkpoint(params, opt_state))
  result.update(batch_size=batch_size, steps_per_loop=steps_per_loop,
                devices=len(devices) if devices else 1,
                peak_host_rss_mib=_measure.peak_rss_mib(),
                peak_device_mib=_measure.peak_device_mib(devices))
  return result


def _checkpoint(params, opt_state) -> dict[str, float]:
  """Saves params + optimizer state with Orbax, restores the params; times both."""
  import orbax.checkpoint as ocp
  root = tempfile.mkdtemp(prefix='bench_baseline_')
  ckptr = ocp.StandardCheckpointer()
  try:
    t = time.perf_counter()
    ckptr.save(f'{root}/params', params)
    ckptr.save(f'{root}/opt_state', opt_state)
    ckptr.wait_until_finished()
    save_s = time.perf_counter() - t
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    t = time.perf_counter()
    restored = ckptr.restore(f'{root}/params', abstract)
    jax.block_until_ready(restored)
    restore_s = time.perf_counter() - t
    size = _measure.dir_mib(root)
  finally:
    ckptr.close()
    shutil.rmtree(root, ignore_errors=True)
  return {'checkpoint_save_s': save_s, 'checkpoint_restore_s': restore_s, 'checkpoint_mib': size}
