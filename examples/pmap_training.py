"""A hand-written `jax.pmap` training loop reusing a jestimator `model_fn`, without the Estimator.

The pure step builders (`jestimator.make_train_step`, `make_eval_step`) turn the same model_fn
the Estimator runs (its layers, heads, feature columns and metrics) into functions you can
`jax.pmap`, `jax.jit` or `shard_map` yourself:

  train_step = jestimator.make_train_step(model_fn, optimizer, axis_name='batch')
  p_train_step = jax.pmap(train_step, axis_name='batch')

With `axis_name`, the step averages gradients, the loss and BatchNorm statistics over the axis and
folds the device index into the dropout key. This script uses the classic pmap layout: the state
carries a leading device axis (`[n_devices, ...]` on every leaf) and each batch is reshaped to
`[n_devices, batch / n_devices, ...]`.

  python examples/pmap_training.py          # on CPU it fakes 8 devices
"""
from __future__ import annotations

import os

# Without accelerators, split the CPU into 8 devices (must happen before JAX starts).
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import jestimator as je  # noqa: E402

AXIS = 'batch'


def model_fn(features, labels, mode):
  """An ordinary jestimator model_fn: dropout and BatchNorm included."""
  train = mode == je.ModeKeys.TRAIN
  h = nn.relu(nn.Dense(64)(features['x']))
  h = nn.Dropout(0.1, deterministic=not train)(h)
  h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
  logits = nn.Dense(1)(h)[:, 0]
  probs = jax.nn.sigmoid(logits)
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'probabilities': probs})
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
  return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1), eval_metrics={
      'accuracy': je.metrics.accuracy(labels, (probs > 0.5).astype(jnp.float32)),
      'auc': je.metrics.auc(labels, probs)})


def make_data(n: int = 4096, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  y = (x @ rng.normal(size=8) + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
  return x, y


def main(steps: int = 200, per_device_batch: int = 16, log_every: int = 50) -> dict:
  devices = jax.local_devices()
  n = len(devices)
  mesh = Mesh(np.array(devices), (AXIS,))
  on_devices = NamedSharding(mesh, P(AXIS))  # leading axis split over the devices

  def shard(a):
    """`[n * k, ...]` host array -> `[n, k, ...]`, one slice per device."""
    return jax.device_put(a.reshape((n, -1) + a.shape[1:]), on_devices)

  def replicate(tree):
    """One copy of every leaf per device: the classic pmap state layout."""
    return jax.device_put(jax.tree.map(lambda a: np.broadcast_to(a, (n,) + np.shape(a)), tree),
                          on_devices)

  x, y = make_data()
  batch = per_device_batch * n

  # The same pure pieces the Estimator uses: ModelFn.init and TrainState.
  model = je.ModelFn(model_fn)
  optimizer = optax.sgd(0.1)

  @jax.jit  # one compiled program instead of many small eager ones
  def create_state(key, features, labels):
    init_key, train_key = jax.random.split(key)
    variables = model.init(init_key, features, labels, je.ModeKeys.TRAIN)
    return je.TrainState.create(variables, optimizer, train_key)

  state = replicate(create_state(jax.random.PRNGKey(0), {'x': x[:batch]}, y[:batch]))

  p_train = jax.pmap(je.make_train_step(model, optimizer, axis_name=AXIS), axis_name=AXIS)
  eval_step = je.make_eval_step(model, axis_name=AXIS)  # metric states summed over devices
  p_eval = jax.pmap(eval_step, axis_name=AXIS)

  losses = []
  for step in range(steps):
    rows = np.arange(step * batch, (step + 1) * batch) % len(x)
    state, out = p_train(state, {'x': shard(x[rows])}, shard(y[rows]))
    # Read the loss now and then: on CPU, many collective programs in flight can deadlock, and
    # this also keeps the host from running far ahead of the devices.
    if step % 10 == 9 or step == 0:
      losses.append(float(out['loss'][0]))  # identical on every device after the pmean
    if log_every and (step + 1) % log_every == 0:
      print(f'step {step + 1}: loss {losses[-1]:.4f}')

  # Evaluation: every device holds the same summed states; merge them over batches on the host.
  eval_vars = {'params': state.params, **state.collections}
  total = None
  for start in range(0, len(x), batch):
    rows = np.arange(start, start + batch) % len(x)
    mask = (np.arange(start, start + batch) < len(x)).astype(np.float32)
    states = p_eval(eval_vars, {'x': shard(x[rows])}, shard(y[rows]), shard(mask))
    states = jax.tree.map(lambda a: a[0], states)  # device 0's copy of the psum-ed states
    total = states if total is None else {k: total[k].merge(v) for k, v in states.items()}
  metrics = je.metrics.compute(total)
  print('eval:', {k: round(float(v), 4) for k, v in metrics.items()})
  return {'losses': losses, 'metrics': metrics}


if __name__ == '__main__':
  main()
