"""The pure step builders (`jestimator.steps`) against hand-derived numpy values."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jestimator import steps
from jestimator.mode_keys import ModeKeys
from jestimator.model_fn import ModelFn
from jestimator.spec import EstimatorSpec
from jestimator.train_state import TrainState


def _regression_model_fn(features, labels, mode):
  pred = nn.Dense(1)(features['x'])[:, 0]
  if mode == ModeKeys.PREDICT:
    return EstimatorSpec(mode, predictions={'pred': pred})
  return EstimatorSpec(mode, loss=jnp.mean((pred - labels) ** 2), optimizer=optax.sgd(0.1))


def _setup():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 3)).astype(np.float32)
  y = rng.normal(size=8).astype(np.float32)
  model = ModelFn(_regression_model_fn)
  variables = model.init(jax.random.PRNGKey(0), {'x': x}, y)
  state = TrainState.create(variables, optax.sgd(0.1), jax.random.PRNGKey(1))
  return model, state, x, y


def test_train_step_is_one_sgd_step():
  model, state, x, y = _setup()
  w = np.asarray(state.params['Dense_0']['kernel'], np.float64)[:, 0]
  b = float(state.params['Dense_0']['bias'][0])
  new_state, out = jax.jit(steps.make_train_step(model))(state, {'x': x}, y)
  err = x.astype(np.float64) @ w + b - y
  np.testing.assert_allclose(float(out['loss']), np.mean(err ** 2), rtol=1e-5)
  grad_w = 2 * x.T.astype(np.float64) @ err / len(y)
  grad_b = 2 * err.mean()
  np.testing.assert_allclose(new_state.params['Dense_0']['kernel'][:, 0], w - 0.1 * grad_w,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_state.params['Dense_0']['bias'][0], b - 0.1 * grad_b,
                             rtol=1e-5, atol=1e-6)
  assert int(new_state.step) == 1


def test_train_loop_equals_k_steps():
  model, state, x, y = _setup()
  step = jax.jit(steps.make_train_step(model))
  xs = np.stack([x, x[::-1], x * 2])
  ys = np.stack([y, y[::-1], y * 2])
  expected, losses = state, []
  for k in range(3):
    expected, out = step(expected, {'x': xs[k]}, ys[k])
    losses.append(float(out['loss']))
  got, out = jax.jit(steps.make_train_loop(steps.make_train_step(model)))(state, {'x': xs}, ys)
  assert int(got.step) == 3
  np.testing.assert_allclose(np.asarray(out['losses']), losses, rtol=1e-6)
  np.testing.assert_allclose(float(out['loss']), losses[-1], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(expected.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_eval_step_loss_state_counts_one_batch():
  model, state, x, y = _setup()
  mask = np.ones(8, np.float32)
  states = jax.jit(steps.make_eval_step(model))(state.variables, {'x': x}, y, mask)
  w = np.asarray(state.params['Dense_0']['kernel'])[:, 0]
  b = float(state.params['Dense_0']['bias'][0])
  np.testing.assert_allclose(float(states['loss'].total), np.mean((x @ w + b - y) ** 2), rtol=1e-5)
  assert float(states['loss'].count) == 1.0
  merged = steps.merge_states(states, states)
  assert float(merged['loss'].count) == 2.0


def test_predict_step():
  model, state, x, _ = _setup()
  preds = jax.jit(steps.make_predict_step(model))(state.variables, {'x': x}, np.ones(8, np.float32))
  w = np.asarray(state.params['Dense_0']['kernel'])[:, 0]
  b = float(state.params['Dense_0']['bias'][0])
  np.testing.assert_allclose(preds['pred'], x @ w + b, rtol=1e-5, atol=1e-6)


def test_train_step_from_plain_model_fn_and_explicit_optimizer():
  _, state, x, y = _setup()
  step = jax.jit(steps.make_train_step(_regression_model_fn, optax.sgd(0.0)))
  new_state, _ = step(state, {'x': x}, y)  # lr 0 overrides the spec's optimizer: no change
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)


def _summarised_model_fn(features, labels, mode):
  from jestimator import summary
  hidden = nn.relu(nn.Dense(4)(features['x']))
  summary.scalar('hidden/zero_fraction', summary.zero_fraction(hidden))
  summary.histogram('hidden/activation', hidden)
  pred = nn.Dense(1)(hidden)[:, 0]
  summary.histogram('pred', pred)
  return EstimatorSpec(mode, loss=jnp.mean((pred - labels) ** 2), optimizer=optax.sgd(0.1))


def test_switched_train_step_is_the_lean_step_and_the_full_step_in_one_program():
  """The summaries under a runtime switch, packed into one vector: the state of the lean step and,
  when asked for, exactly the summaries of the `with_outputs` step; zeros otherwise."""
  from jestimator.model import summary
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 3)).astype(np.float32)
  y = rng.normal(size=8).astype(np.float32)
  model = ModelFn(_summarised_model_fn)
  state = TrainState.create(model.init(jax.random.PRNGKey(0), {'x': x}, y), optax.sgd(0.1),
                            jax.random.PRNGKey(1))
  packing = summary.Packing()
  switched = jax.jit(steps.make_train_step(model, outputs_switch=True, packing=packing))
  lean_state, lean = jax.jit(steps.make_train_step(model))(state, {'x': x}, y)
  _, full = jax.jit(steps.make_train_step(model, with_outputs=True))(state, {'x': x}, y)
  for want in (True, False):
    new_state, out = switched(state, {'x': x}, y, None, np.asarray(want))
    assert _tree_equal(new_state, lean_state) and float(out['loss']) == float(lean['loss'])
    got = packing.unpack(jax.device_get(out['summaries']['packed']))
    expected = jax.device_get({'scalars': full['summaries']['scalars'],
                               'histograms': full['summaries']['histograms']})
    if not want:
      expected = jax.tree.map(np.zeros_like, expected)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(a, b)
  assert float(np.sum(got['histograms']['pred'].counts)) == 0.0  # want=False: zeros
  counts = jax.device_get(full['summaries']['histograms']['hidden/activation'].counts)
  assert float(np.sum(counts)) == 8 * 4  # every activation counted once


def _tree_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(p), np.asarray(q))
                                    for p, q in zip(la, lb))
