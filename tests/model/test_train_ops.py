"""`jestimator.train_ops` inside the pure train step: today's optimizer bit for bit, groups,
alternating (GAN) updates against a hand-written optax loop, SAM, reduce_on_plateau, EMA (numpy
and TF 2.15's numbers), post-update assignment, forward-pass counts and optimizer-state sizes."""
from __future__ import annotations

import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import train_ops
from jestimator.state.checkpoints import flatten_with_names

sys.path.insert(0, os.path.dirname(__file__))
import _gan  # noqa: E402

TF_EMA = os.path.join(os.path.dirname(__file__), '..', 'tf_parity', 'data', 'train_ops_ema.json')
_rng = np.random.default_rng(1)
X = _rng.normal(size=(16, 4)).astype(np.float32)
Y = (X @ _rng.normal(size=4) > 0).astype(np.float32)


class Counter(nn.Module):
  """Counts its training forward passes in the mutable `batch_stats` collection."""

  @nn.compact
  def __call__(self, x):
    n = self.variable('batch_stats', 'passes', lambda: jnp.zeros((), jnp.int32))
    if not self.is_initializing():
      n.value += 1
    return x


def bn_dropout_fn(rule=None, losses=False):
  """BatchNorm, dropout and a pass counter: exercises collections and dropout keys."""
  def model_fn(features, labels, mode):
    train = mode == je.ModeKeys.TRAIN
    x = Counter(name='counter')(features['x'])
    h = nn.relu(nn.BatchNorm(use_running_average=not train, name='bn')(
        nn.Dense(8, name='body')(x)))
    h = nn.Dropout(0.3, deterministic=not train)(h)
    logits = nn.Dense(1, name='head')(h)[:, 0]
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
    extra = {'losses': {'l2': loss + 1e-2 * jnp.mean(logits ** 2)}} if losses else {}
    if isinstance(rule, optax.GradientTransformation):
      return je.EstimatorSpec(mode, loss=loss, optimizer=rule, **extra)
    return je.EstimatorSpec(mode, loss=loss, train_op=rule, **extra)
  return model_fn


def _state(model_fn, rule, seed=0):
  model = je.ModelFn(model_fn)
  variables = model.init(jax.random.PRNGKey(seed), {'x': X}, Y)
  return model, je.TrainState.create(variables, rule, jax.random.PRNGKey(seed + 1))


def _run(model_fn, rule, steps=5, seed=0):
  model, state = _state(model_fn, rule, seed)
  step = jax.jit(je.make_train_step(model))
  outs = []
  for _ in range(steps):
    state, out = step(state, {'x': X}, Y)
    outs.append(out)
  return state, outs


def _todays_step(model, tx):
  """The train step before train ops (the reference for `minimize`, bit for bit)."""
  def train_step(state, features, labels):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      spec, updated = model.apply({'params': params, **state.collections}, features, labels,
                                  je.ModeKeys.TRAIN, rng=rng, mutable=list(state.collections))
      return spec.loss, updated

    (loss, updated), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         collections={**state.collections, **updated}, opt_state=opt_state), loss
  return train_step


def _assert_same(a, b, atol=0.0):
  fa, fb = flatten_with_names(jax.device_get(a)), flatten_with_names(jax.device_get(b))
  assert sorted(fa) == sorted(fb)
  for k in fa:
    if atol == 0.0:
      np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    else:
      np.testing.assert_allclose(fa[k], fb[k], atol=atol, rtol=0, err_msg=k)


@pytest.mark.parametrize('spec_form', ['optimizer', 'train_op'])
def test_minimize_is_todays_optimizer_bit_for_bit(spec_form):
  tx = optax.adam(0.05)
  rule = tx if spec_form == 'optimizer' else train_ops.minimize(tx)
  model, state = _state(bn_dropout_fn(rule), tx)
  ref = jax.jit(_todays_step(model, tx))
  step = jax.jit(je.make_train_step(model))
  got, want = state, state
  for _ in range(4):
    got, out = step(got, {'x': X}, Y)
    want, loss = ref(want, {'x': X}, Y)
    assert float(out['loss']) == float(loss) and out['update_losses'] == {}
  _assert_same((got.params, got.opt_state, got.collections),
               (want.params, want.opt_state, want.collections))


def _old_combined(linear_opt, dnn_opt):
  """The canned wide & deep's combined optimizer before `groups` (top-level labels)."""
  def labels(params):
    return {k: jax.tree.map(lambda _: k, v) for k, v in params.items()}
  return optax.multi_transform({'linear': linear_opt, 'dnn': dnn_opt}, labels)


def wide_deep_fn(tx):
  def model_fn(features, labels, mode):
    logits = (nn.Dense(1, name='linear')(features['x']) +
              nn.Dense(1, name='dnn')(nn.relu(nn.Dense(8, name='dnn_h')(features['x']))))[:, 0]
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
    return je.EstimatorSpec(mode, loss=loss, optimizer=tx)
  return model_fn


def test_groups_equals_multi_transform_and_covers_only_own_parameters():
  ftrl, adagrad = optax.adam(0.1), optax.adagrad(0.05)
  new = train_ops.groups({'linear': ftrl, 'dnn': adagrad},
                         by={'linear': '^params/linear/', 'dnn': '^params/dnn'})
  old = optax.multi_transform({'linear': ftrl, 'dnn': adagrad},
                              lambda p: {k: jax.tree.map(lambda _: 'linear' if k == 'linear'
                                                         else 'dnn', v) for k, v in p.items()})
  got, _ = _run(wide_deep_fn(new), new)
  want, _ = _run(wide_deep_fn(old), old)
  _assert_same((got.params, got.opt_state), (want.params, want.opt_state))
  # Optimizer-state bytes: Adam's two slots over the linear group only, Adagrad's one over the
  # DNN group only, plus Adam's step count: no slot for a parameter outside its group.
  size = lambda t: sum(np.asarray(a).nbytes for a in jax.tree.leaves(t))
  lin = size(got.params['linear'])
  dnn = size({k: v for k, v in got.params.items() if k != 'linear'})
  assert size(got.opt_state) == 2 * lin + dnn + 4
  with pytest.raises(ValueError, match="'params/dnn_h/bias' matches no group"):
    bad = train_ops.groups({'linear': ftrl, 'dnn': adagrad},
                           by={'linear': '^params/linear/', 'dnn': '^params/dnn/'})
    _run(wide_deep_fn(bad), bad, steps=1)


def test_alternate_state_covers_only_each_updates_parameters():
  model = je.ModelFn(_gan.model_fn)
  f = next(_gan.input_fn())
  params = model.init(jax.random.PRNGKey(0), f, None)['params']
  opt_state = _gan.train_op().init(params)
  size = lambda t: sum(np.asarray(a).nbytes for a in jax.tree.leaves(t))
  assert sorted(opt_state) == ['discriminator', 'generator']
  for name in ('discriminator', 'generator'):
    assert size(opt_state[name]) == 2 * size(params[name]) + 4, name  # mu, nu, count


@pytest.mark.parametrize('mode', ['sequential', 'joint'])
def test_gan_matches_hand_written_alternating_loop(mode):
  g_every = 2 if mode == 'sequential' else 1
  model = je.ModelFn(_gan.model_fn, params={'g_every': g_every, 'mode': mode})
  batches = _gan.input_fn()
  f = next(_gan.input_fn())
  state = je.TrainState.create(model.init(jax.random.PRNGKey(0), f, None),
                               _gan.train_op(g_every, mode), jax.random.PRNGKey(1))
  init = jax.device_get(state.params)
  step = jax.jit(je.make_train_step(model))
  seen = []
  for _ in range(50):
    state, out = step(state, next(batches), None)
    seen.append(out['update_losses'])
  want = _gan.hand_written(init, 50, g_every, joint=mode == 'joint')
  _assert_same(state.params, want, atol=1e-6)
  # Each optimizer counted its own updates; the generator ran at even steps only.
  assert int(state.opt_state['discriminator'][0].count) == 50
  assert int(state.opt_state['generator'][0].count) == 50 // g_every
  g = [float(s['generator']) for s in seen]
  assert all(np.isfinite(g[::g_every])) and (g_every == 1 or all(np.isnan(g[1::2])))
