"""A GAN inside the Estimator: a generator learns a ring of 8 Gaussians in 2-D.

The model_fn returns both losses and a `train_op` (`jestimator.train_ops`): the discriminator
and the generator update alternately, each with its own Adam over its own parameters (TF-GAN's
`GANEstimator` with sequential train hooks), and an exponential moving average of the generator's
weights is kept for sampling (`Estimator(eval_variables='ema')`). Training stops half-way and a
new Estimator resumes it from the checkpoint, as a restarted job would. The generator's samples
move from a blob at the origin onto the ring; a PNG shows them.
Run: `python examples/gan_mixture.py`.
"""
import logging
import os
import sys
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jestimator as je
from jestimator import train_ops

logging.basicConfig(level=logging.INFO, format='%(message)s', force=True)
MODES, RADIUS, BATCH = 8, 2.0, 256
CENTERS = RADIUS * np.stack([np.cos(np.arange(MODES) * 2 * np.pi / MODES),
                             np.sin(np.arange(MODES) * 2 * np.pi / MODES)], 1)


class Mlp(nn.Module):
  out: int

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.relu(nn.Dense(64)(x))
    return nn.Dense(self.out)(x)


def model_fn(features, mode):
  generator, discriminator = Mlp(2, name='generator'), Mlp(1, name='discriminator')
  fake = generator(features['z'])
  # Built in every mode: evaluate / predict restore every variable the checkpoint holds.
  d_fake = discriminator(fake)[:, 0]
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'sample': fake})
  d_real = discriminator(features['x'])[:, 0]
  d_loss = jnp.mean(jax.nn.softplus(-d_real) + jax.nn.softplus(d_fake))
  g_loss = jnp.mean(jax.nn.softplus(-d_fake))  # the non-saturating generator loss
  adam = lambda: optax.adam(1e-3, b1=0.5)
  train_op = train_ops.then(
      train_ops.alternate([
          train_ops.Update(adam(), loss='discriminator', wrt='^params/discriminator/'),
          train_ops.Update(adam(), loss='generator', wrt='^params/generator/')]),
      train_ops.ema(0.99, wrt='^params/generator/'))
  return je.EstimatorSpec(mode, loss=d_loss, train_op=train_op,
                          losses={'discriminator': d_loss, 'generator': g_loss},
                          eval_metrics={'generator_loss': je.metrics.mean(g_loss)})


def train_input_fn(seed=0):
  """Endless batches: real points on the ring and the generator's noise."""
  rng = np.random.default_rng(seed)
  while True:
    centers = CENTERS[rng.integers(0, MODES, BATCH)]
    x = (centers + 0.05 * rng.normal(size=(BATCH, 2))).astype(np.float32)
    yield {'x': x, 'z': rng.normal(size=(BATCH, 2)).astype(np.float32)}


def sample(est, n=1024, checkpoint_path=None):
  """`n` generator samples (of the latest checkpoint, or `checkpoint_path`)."""
  z = np.random.default_rng(123).normal(size=(n, 2)).astype(np.float32)
  preds = est.predict(je.inputs.numpy_input_fn({'z': z}, batch_size=n, shuffle=False),
                      checkpoint_path=checkpoint_path)
  return np.stack([p['sample'] for p in preds])


def distance_to_ring(points) -> float:
  """Mean distance of the points to the nearest mode centre."""
  return float(np.mean(np.min(np.linalg.norm(points[:, None] - CENTERS[None], axis=-1), 1)))


def modes_covered(points, within=0.5) -> int:
  d = np.linalg.norm(points[:, None] - CENTERS[None], axis=-1)
  near = d.min(1) < within
  return int(len(set(d.argmin(1)[near].tolist())))


def main(model_dir=None, steps=2000):
  model_dir = model_dir or tempfile.mkdtemp(prefix='gan_')
  config = je.RunConfig(seed=0, steps_per_loop=50, save_checkpoints_steps=steps // 2,
                        log_step_count_steps=steps // 4)
  sampler = lambda: je.Estimator(model_fn, model_dir, config=config, eval_variables='ema')
  je.Estimator(model_fn, model_dir, config=config).train(lambda: train_input_fn(0),
                                                               max_steps=steps // 2)
  start = sample(sampler(), checkpoint_path=os.path.join(model_dir, '0'))  # untrained
  before = sample(sampler())
  # A new Estimator resumes from the checkpoint, with the optimizer states and EMA weights.
  je.Estimator(model_fn, model_dir, config=config).train(lambda: train_input_fn(1),
                                                               max_steps=steps)
  after = sample(sampler())
  step = je.Estimator(model_fn, model_dir).get_variable_value('global_step')
  results = {'global_step': int(step),
             'distance_start': distance_to_ring(start),
             'distance_half_way': distance_to_ring(before), 'distance': distance_to_ring(after),
             'modes_covered': modes_covered(after), 'plot': None}
  try:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
  except ImportError:
    print('matplotlib is not installed: no plot', file=sys.stderr)
  else:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(*start.T, s=2, alpha=0.4, label='step 0')
    ax.scatter(*before.T, s=2, alpha=0.4, label=f'step {steps // 2}')
    ax.scatter(*after.T, s=2, alpha=0.4, label=f'step {steps}')
    ax.scatter(*CENTERS.T, marker='x', c='k', label='modes')
    ax.set_aspect('equal')
    ax.legend(loc='upper right')
    results['plot'] = os.path.join(model_dir, 'samples.png')
    fig.savefig(results['plot'], dpi=80)
    plt.close(fig)
  print(results)
  return results


if __name__ == '__main__':
  main()
