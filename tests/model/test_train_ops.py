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
      n.value = n.value + 1
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


@pytest.mark.parametrize('spec_form', ['optimizer', 'minimize', 'groups'])
def test_multisteps_is_accepted_as_a_transformation_bit_for_bit(spec_form):
  # optax.MultiSteps is a class of its own, not a GradientTransformation; it was accepted as
  # EstimatorSpec(optimizer=) before train ops and must stay so everywhere a tx is taken.
  tx = optax.MultiSteps(optax.adam(0.05), every_k_schedule=2)
  rule = {'optimizer': tx, 'minimize': train_ops.minimize(tx),
          'groups': train_ops.minimize(train_ops.groups({'all': tx}, by={'all': '.'}))}[spec_form]

  def model_fn(features, labels, mode):
    logits = nn.Dense(1, name='head')(features['x'])[:, 0]
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
    if spec_form == 'optimizer':
      return je.EstimatorSpec(mode, loss=loss, optimizer=rule)
    return je.EstimatorSpec(mode, loss=loss, train_op=rule)

  model, state = _state(model_fn, tx)
  ref = jax.jit(_todays_step(model, tx))
  got, want = _state(model_fn, rule if spec_form != 'optimizer' else tx)[1], state
  step = jax.jit(je.make_train_step(model))
  for _ in range(4):
    got, out = step(got, {'x': X}, Y)
    want, loss = ref(want, {'x': X}, Y)
    assert float(out['loss']) == float(loss)
  _assert_same(got.params, want.params)


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


@pytest.mark.parametrize('mode,g_every', [('sequential', 2), ('joint', 1), ('joint', 2)])
def test_gan_matches_hand_written_alternating_loop(mode, g_every):
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
  assert all(np.isfinite(float(s[k])) for s in seen for k in ('generator', 'discriminator'))


def test_sam_opaque_matches_manual_two_pass_and_counts_passes():
  lr, rho = 0.1, 0.05
  sam = optax.contrib.sam(optax.sgd(lr), optax.chain(optax.contrib.normalize(), optax.sgd(rho)),
                          sync_period=2, opaque_mode=True)
  model_fn = bn_dropout_fn(train_ops.minimize(sam))
  model, state = _state(model_fn, sam)
  p0, c0 = jax.device_get((state.params, state.collections))
  state, _ = jax.jit(je.make_train_step(model))(state, {'x': X}, Y)
  # By hand: the gradient at p, an ascent step of rho along its direction, the gradient there
  # (with the collections the first pass left and the second pass's dropout key), a descent step.
  rng = jax.random.fold_in(jax.random.PRNGKey(1), 0)

  def grad(p, c, key):
    def f(q):
      spec, upd = model.apply({'params': q, **c}, {'x': X}, Y, je.ModeKeys.TRAIN, rng=key,
                              mutable=['batch_stats'])
      return spec.loss, upd
    return jax.grad(f, has_aux=True)(p)

  g1, c1 = grad(p0, c0, rng)
  norm = optax.tree.norm(g1)
  adv = jax.tree.map(lambda p, g: p + rho * g / norm, p0, g1)
  g2, c2 = grad(adv, {**c0, **c1}, jax.random.fold_in(rng, 1))
  want = jax.tree.map(lambda p, g: p - lr * g, p0, g2)
  _assert_same(state.params, want, atol=1e-6)
  # BatchNorm statistics saw both forward passes, in order.
  assert int(state.collections['batch_stats']['counter']['passes']) == 2
  _assert_same(state.collections['batch_stats']['bn'], c2['batch_stats']['bn'], atol=1e-6)


def test_reduce_on_plateau_receives_the_loss():
  tx = optax.chain(optax.sgd(0.5), optax.contrib.reduce_on_plateau(patience=1, factor=0.5))
  state, outs = _run(bn_dropout_fn(train_ops.minimize(tx)), tx, steps=6)
  plateau = state.opt_state[1]
  losses = [float(o['loss']) for o in outs]
  # The transformation saw each step's loss: its best value is the lowest loss it was given.
  assert float(plateau.best_value) == pytest.approx(min(losses), abs=1e-6)


@pytest.mark.parametrize('repeat,expected', [(1, 10 + 5), (2, 10 + 2 * 5)])
def test_forward_passes_reach_the_collections_exactly(repeat, expected):
  rule = train_ops.alternate([
      train_ops.Update(optax.sgd(0.1), wrt='^params/head/'),
      train_ops.Update(optax.sgd(0.1), loss='l2', wrt='^params/body/', every=2, repeat=repeat)])
  state, outs = _run(bn_dropout_fn(rule, losses=True), rule, steps=10)
  assert int(state.collections['batch_stats']['counter']['passes']) == expected
  # Each update's loss at the step's starting parameters, also at steps where it did not run.
  assert sorted(outs[1]['update_losses']) == ['l2', 'update_0']
  assert float(outs[1]['update_losses']['update_0']) == float(outs[1]['loss'])
  assert float(outs[1]['update_losses']['l2']) > float(outs[1]['loss'])


def _ema_model(w0, rule):
  def model_fn(features, labels, mode):
    w = nn.Dense(1, use_bias=False, kernel_init=lambda *_: jnp.asarray(w0)[:, None])
    pred = w(features['x'])[:, 0]
    if mode == je.ModeKeys.PREDICT:
      return je.EstimatorSpec(mode, predictions={'y': pred})
    return je.EstimatorSpec(mode, loss=jnp.mean((pred - labels) ** 2), train_op=rule,
                            eval_metrics={'mae': je.metrics.mean_absolute_error(labels, pred)})
  return model_fn


@pytest.mark.parametrize('case', [0, 1])
def test_ema_matches_tf_exponential_moving_average(case):
  with open(TF_EMA) as f:
    tf = json.load(f)
  c = tf['cases'][case]
  rule = train_ops.then(optax.sgd(tf['lr']), train_ops.ema(c['decay'],
                                                          num_updates=c['num_updates']))
  x, y = np.asarray(tf['x'], np.float32), np.asarray(tf['y'], np.float32)
  model = je.ModelFn(_ema_model(tf['w0'], rule))
  state = je.TrainState.create(model.init(jax.random.PRNGKey(0), {'x': x}, y), rule,
                               jax.random.PRNGKey(0))
  step = jax.jit(je.make_train_step(model))
  shadow = np.asarray(tf['w0'], np.float64)  # the numpy recurrence, from the initial weights
  for i, (w, avg) in enumerate(zip(c['weights'], c['averages'])):
    state, _ = step(state, {'x': x}, y)
    got_w = np.asarray(state.params['Dense_0']['kernel'])[:, 0]
    got = np.asarray(train_ops.extras(state.opt_state)['ema']['Dense_0']['kernel'])[:, 0]
    np.testing.assert_allclose(got_w, w, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(got, avg, atol=1e-6, rtol=1e-6)  # TF 2.15's numbers
    decay = min(c['decay'], (2 + i) / (11 + i)) if c['num_updates'] else c['decay']
    shadow = shadow - (1 - decay) * (shadow - got_w.astype(np.float64))
    np.testing.assert_allclose(got, shadow, atol=1e-7, rtol=0)


def test_assign_keeps_every_clipped_weight_in_bounds():
  clip = 0.05
  rule = train_ops.then(train_ops.minimize(optax.sgd(5.0)),
                        train_ops.assign(lambda w: jnp.clip(w, -clip, clip), wrt='kernel$'))
  state, _ = _run(bn_dropout_fn(rule), rule, steps=3)
  names = flatten_with_names(jax.device_get(state.params))
  kernels = {k: v for k, v in names.items() if k.endswith('kernel')}
  assert len(kernels) == 2 and all(np.max(np.abs(v)) <= clip for v in kernels.values())
  assert any(np.max(np.abs(v)) == clip for v in kernels.values())  # the clip did bite
  assert max(np.max(np.abs(v)) for k, v in names.items() if k.endswith('bias')) > clip


def test_train_op_errors_name_what_is_wrong():
  with pytest.raises(ValueError, match='needs an update with every=1'):
    train_ops.alternate([train_ops.Update(optax.sgd(1), every=2)])
  with pytest.raises(ValueError, match='names must differ'):
    train_ops.alternate([train_ops.Update(optax.sgd(1)), train_ops.Update(optax.sgd(1))] and
                        [train_ops.Update(optax.sgd(1), name='a'),
                         train_ops.Update(optax.sgd(1), name='a')])
  with pytest.raises(ValueError, match="wrt='nothing' selects no parameter"):
    rule = train_ops.alternate([train_ops.Update(optax.sgd(1), wrt='nothing')])
    _state(bn_dropout_fn(rule), rule)
  rule = train_ops.alternate([train_ops.Update(optax.sgd(1), loss='missing')])
  with pytest.raises(ValueError, match="loss 'missing'.*losses"):
    _run(bn_dropout_fn(rule), rule, steps=1)
  with pytest.raises(ValueError, match='Update\\(every=...\\) must be an int >= 1'):
    train_ops.Update(optax.sgd(1), every=0)
