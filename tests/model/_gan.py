"""A toy GAN on a 2-D ring of Gaussians, and the hand-written alternating optax loop it must match.

Shared by test_train_ops.py and its subprocess worker (`_gan_worker.py`). The discriminator
updates every step, the generator every 2nd step (after it), each with its own Adam: TF-GAN's
sequential train hooks with the generator on a cadence.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jestimator as je
from jestimator import train_ops

BATCH = 32
ROWS = BATCH * 64
_rng = np.random.default_rng(0)
_angles = _rng.integers(0, 8, ROWS) * (2 * np.pi / 8)
REAL = (np.stack([np.cos(_angles), np.sin(_angles)], 1) * 2 +
        0.05 * _rng.normal(size=(ROWS, 2))).astype(np.float32)
NOISE = _rng.normal(size=(ROWS, 2)).astype(np.float32)
G_LR, D_LR = 1e-3, 2e-3


class Mlp(nn.Module):
  out: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.out)(nn.tanh(nn.Dense(16)(x)))


def gan_losses(generator, discriminator, features):
  fake = generator(features['z'])
  d_real = discriminator(features['x'])[:, 0]
  d_fake = discriminator(fake)[:, 0]
  d_loss = jnp.mean(jax.nn.softplus(-d_real) + jax.nn.softplus(d_fake))
  g_loss = jnp.mean(jax.nn.softplus(-d_fake))  # the non-saturating generator loss
  return fake, g_loss, d_loss


def train_op(g_every: int = 2, mode: str = 'sequential'):
  return train_ops.alternate([
      train_ops.Update(optax.adam(D_LR), loss='discriminator', wrt='^params/discriminator/'),
      train_ops.Update(optax.adam(G_LR), loss='generator', wrt='^params/generator/',
                       every=g_every)], mode=mode)


def model_fn(features, mode, params):
  generator, discriminator = Mlp(2, name='generator'), Mlp(1, name='discriminator')
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'sample': generator(features['z'])})
  fake, g_loss, d_loss = gan_losses(generator, discriminator, features)
  return je.EstimatorSpec(mode, loss=g_loss, losses={'generator': g_loss, 'discriminator': d_loss},
                          train_op=train_op(**(params or {})),
                          eval_metrics={'d_loss': je.metrics.mean(d_loss)})


def input_fn(input_context=None):
  """Global batch `s` is rows `32s .. 32s+31` (mod ROWS); process `i` of `n` feeds its slice."""
  n = input_context.num_input_pipelines if input_context else 1
  i = input_context.input_pipeline_id if input_context else 0
  for s in range(100_000):
    rows = (np.arange(BATCH) + BATCH * s) % ROWS
    local = rows.reshape(n, -1)[i]
    yield {'x': REAL[local], 'z': NOISE[local]}


def hand_written(params, steps: int, g_every: int = 2, joint: bool = False):
  """The reference: the same updates written by hand with optax, step by step (`joint`: both
  gradients at the step's starting parameters, as TF-GAN's joint train hooks)."""
  model = je.ModelFn(model_fn, params=None)

  def losses(p, features):
    spec, _ = model.apply({'params': p}, features, None, je.ModeKeys.TRAIN)
    return spec.losses

  d_tx, g_tx = optax.adam(D_LR), optax.adam(G_LR)
  d_state, g_state = d_tx.init(params['discriminator']), g_tx.init(params['generator'])

  @jax.jit
  def d_step(p, s, f):
    g = jax.grad(lambda d: losses({**p, 'discriminator': d}, f)['discriminator'])(
        p['discriminator'])
    u, s = d_tx.update(g, s, p['discriminator'])
    return {**p, 'discriminator': optax.apply_updates(p['discriminator'], u)}, s

  @jax.jit
  def g_step(p, s, f):
    g = jax.grad(lambda q: losses({**p, 'generator': q}, f)['generator'])(p['generator'])
    u, s = g_tx.update(g, s, p['generator'])
    return {**p, 'generator': optax.apply_updates(p['generator'], u)}, s

  batches = input_fn()
  for step in range(steps):
    f = next(batches)
    start = params
    params, d_state = d_step(params, d_state, f)
    if step % g_every == 0:
      g_params, g_state = g_step(start if joint else params, g_state, f)
      params = {**params, 'generator': g_params['generator']}
  return params


def variables(est) -> dict:
  return {k: np.asarray(est.get_variable_value(k)) for k in est.get_variable_names()
          if k.startswith('params/')}
