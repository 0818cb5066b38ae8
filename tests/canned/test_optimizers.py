"""Tests of `jestimator.canned.optimizers`: TF's FTRL in optax and the optimizer lookup."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jestimator.canned import optimizers as opt_lib


def _run(tx, params, grads, steps):
  """`steps` updates with constant `grads`, compiled as one program (fast, and checks tracing)."""

  def run(params):
    state = tx.init(params)
    for _ in range(steps):
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
    return params, state

  return jax.jit(run)(params)


def _numpy_ftrl(w, g, steps, lr, power=-0.5, n0=0.1, l1=0.0, l2=0.0, shrink=0.0, beta=0.0):
  """An independent float64 transcription of TF's ApplyFtrlV2 kernel (Keras folds beta into l2)."""
  w = np.array(w, np.float64)
  g = np.array(g, np.float64)
  n = np.full_like(w, n0)
  z = np.zeros_like(w)
  l2 = l2 + beta / (2 * lr)
  p = -power
  for _ in range(steps):
    g_shrunk = g + 2 * shrink * w
    n_new = n + g * g
    z = z + g_shrunk - (n_new ** p - n ** p) / lr * w
    w = np.where(np.abs(z) > l1, (l1 * np.sign(z) - z) / (n_new ** p / lr + 2 * l2), 0.0)
    n = n_new
  return w, n, z


def test_ftrl_first_step_by_hand():
  # w=0, g=1, n0=0.1, lr=1: n=1.1, z=1 - (sqrt(1.1) - sqrt(0.1)) * 0 = 1, w = -z / sqrt(1.1).
  params, state = _run(opt_lib.ftrl(1.0), {'w': jnp.zeros([1])}, {'w': jnp.ones([1])}, 1)
  np.testing.assert_allclose(params['w'], [-1 / math.sqrt(1.1)], rtol=1e-6)
  np.testing.assert_allclose(state.accumulator['w'], [1.1], rtol=1e-6)
  np.testing.assert_allclose(state.linear['w'], [1.0], rtol=1e-6)
  # Second step with the same gradient: n=2.1, z = 1 + 1 - (sqrt(2.1) - sqrt(1.1)) * w1.
  params, state = _run(opt_lib.ftrl(1.0), {'w': jnp.zeros([1])}, {'w': jnp.ones([1])}, 2)
  w1 = -1 / math.sqrt(1.1)
  z2 = 2 - (math.sqrt(2.1) - math.sqrt(1.1)) * w1
  np.testing.assert_allclose(params['w'], [-z2 / math.sqrt(2.1)], rtol=1e-6)
  np.testing.assert_allclose(state.linear['w'], [z2], rtol=1e-6)


@pytest.mark.parametrize('kwargs', [
    dict(lr=0.5),
    dict(lr=0.5, l1=0.05, l2=0.3),
    dict(lr=0.2, power=-0.7, l1=0.01, l2=0.1, shrink=0.2),
    dict(lr=0.3, beta=0.5, shrink=0.05),
    dict(lr=0.1, power=0.0, n0=0.0),
])
def test_ftrl_two_steps_match_numpy(kwargs):
  w0 = np.array([[0.5, -1.0, 0.0], [2.0, 0.01, -0.3]], np.float32)
  g = np.array([[0.3, -0.2, 0.05], [-1.0, 0.002, 0.4]], np.float32)
  tx = opt_lib.ftrl(kwargs['lr'], learning_rate_power=kwargs.get('power', -0.5),
                    initial_accumulator_value=kwargs.get('n0', 0.1),
                    l1_regularization_strength=kwargs.get('l1', 0.0),
                    l2_regularization_strength=kwargs.get('l2', 0.0),
                    l2_shrinkage_regularization_strength=kwargs.get('shrink', 0.0),
                    beta=kwargs.get('beta', 0.0))
  params, state = _run(tx, {'k': jnp.asarray(w0)}, {'k': jnp.asarray(g)}, 2)
  w, n, z = _numpy_ftrl(w0, g, 2, **kwargs)
  np.testing.assert_allclose(params['k'], w, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(state.accumulator['k'], n, rtol=1e-6)
  np.testing.assert_allclose(state.linear['k'], z, rtol=2e-5, atol=1e-6)
  assert int(state.count) == 2


# TF's own FtrlOptimizer unit tests (tensorflow/compiler/tests/ftrl_test.py): lr 3.0, initial
# accumulator 0.1, constant gradients [0.1, 0.2] and [0.01, 0.02].
@pytest.mark.parametrize('init, steps, kwargs, expected', [
    (([0., 0.], [0., 0.]), 3, {}, ([-2.60260963, -4.29698515], [-0.28432083, -0.56694895])),
    (([1., 2.], [4., 3.]), 3, {}, ([-2.55607247, -3.98729396], [-0.28232238, -0.56096673])),
    (([1., 2.], [4., 3.]), 10, dict(l1_regularization_strength=0.001),
     ([-7.66718769, -10.91273689], [-0.93460727, -1.86147261])),
    (([1., 2.], [4., 3.]), 10, dict(l1_regularization_strength=0.001,
                                    l2_regularization_strength=2.0),
     ([-0.24059935, -0.46829352], [-0.02406147, -0.04830509])),
    (([1., 2.], [4., 3.]), 10, dict(l1_regularization_strength=0.001,
                                    l2_regularization_strength=2.0,
                                    l2_shrinkage_regularization_strength=0.1),
     ([-0.22578996, -0.44345799], [-0.14378493, -0.13229476])),
])
def test_ftrl_matches_tf_unit_tests(init, steps, kwargs, expected):
  params = {'a': jnp.asarray(init[0]), 'b': jnp.asarray(init[1])}
  grads = {'a': jnp.asarray([0.1, 0.2]), 'b': jnp.asarray([0.01, 0.02])}
  params, _ = _run(opt_lib.ftrl(3.0, initial_accumulator_value=0.1, **kwargs), params, grads,
                   steps)
  np.testing.assert_allclose(params['a'], expected[0], rtol=1e-4)
  np.testing.assert_allclose(params['b'], expected[1], rtol=1e-4)


def test_ftrl_shrinkage_leaves_accumulator_alone():
  params = {'w': jnp.asarray([1.0, 2.0])}
  grads = {'w': jnp.asarray([0.1, 0.2])}
  _, s0 = _run(opt_lib.ftrl(3.0, l2_shrinkage_regularization_strength=0.1), params, grads, 4)
  _, s1 = _run(opt_lib.ftrl(3.0), params, grads, 4)
  np.testing.assert_allclose(s0.accumulator['w'], s1.accumulator['w'])
  np.testing.assert_allclose(s0.accumulator['w'], 0.1 + 4 * np.array([0.01, 0.04]), rtol=1e-6)


def test_ftrl_schedule_and_needs_params():
  sched = optax.piecewise_constant_schedule(1.0, {1: 0.5})
  params, _ = _run(opt_lib.ftrl(sched), {'w': jnp.zeros([1])}, {'w': jnp.ones([1])}, 2)
  # Step 1 at lr 1 (w1 = -1/sqrt(1.1)); step 2 at lr 0.5.
  w1 = -1 / math.sqrt(1.1)
  z2 = 2 - (math.sqrt(2.1) - math.sqrt(1.1)) / 0.5 * w1
  np.testing.assert_allclose(params['w'], [-z2 / (math.sqrt(2.1) / 0.5)], rtol=1e-6)
  tx = opt_lib.ftrl(0.1)
  with pytest.raises(ValueError, match='params'):
    tx.update({'w': jnp.ones([1])}, tx.init({'w': jnp.zeros([1])}))


@pytest.mark.parametrize('kwargs, match', [
    (dict(learning_rate_power=0.5), 'learning_rate_power'),
    (dict(initial_accumulator_value=-1.0), 'initial_accumulator_value'),
    (dict(l1_regularization_strength=-0.1), 'l1_regularization_strength'),
    (dict(beta=-1.0), 'beta'),
])
def test_ftrl_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    opt_lib.ftrl(0.1, **kwargs)


def _one_step(tx, w=1.0, g=0.5):
  params, _ = _run(tx, {'w': jnp.asarray([w])}, {'w': jnp.asarray([g])}, 1)
  return float(params['w'][0])


def test_get_optimizer_strings_use_tf_defaults():
  # Adagrad (TF: accumulator 0.1): w - lr * g / sqrt(0.1 + g^2).
  assert _one_step(opt_lib.get_optimizer('adagrad', default_learning_rate=0.05)) == (
      pytest.approx(1 - 0.05 * 0.5 / math.sqrt(0.1 + 0.25), rel=1e-5))
  # Adam first step: w - lr * sign(g) (up to epsilon).
  assert _one_step(opt_lib.get_optimizer('Adam', learning_rate=0.01)) == pytest.approx(
      0.99, rel=1e-5)
  # RMSProp (rho 0.9, ms from 0): w - lr * g / (sqrt(0.1 * g^2) + eps).
  assert _one_step(opt_lib.get_optimizer('RMSProp', learning_rate=0.01)) == pytest.approx(
      1 - 0.01 / math.sqrt(0.1), rel=1e-5)
  assert _one_step(opt_lib.get_optimizer('sgd', learning_rate=0.1)) == pytest.approx(0.95)
  # Ftrl from w=1: z = g - (sqrt(0.35) - sqrt(0.1)) / lr * 1, w = -z / (sqrt(0.35) / lr).
  z = 0.5 - (math.sqrt(0.35) - math.sqrt(0.1)) / 0.3
  assert _one_step(opt_lib.get_optimizer('FTRL', default_learning_rate=0.3)) == pytest.approx(
      -z / (math.sqrt(0.35) / 0.3), rel=1e-5)
  # learning_rate overrides the estimator default; neither: Keras' default (SGD 0.01).
  assert _one_step(opt_lib.get_optimizer('SGD', learning_rate=0.2,
                                         default_learning_rate=0.1)) == pytest.approx(0.9)
  assert _one_step(opt_lib.get_optimizer('SGD')) == pytest.approx(0.995)


def test_get_optimizer_transformations_and_callables():
  tx = optax.sgd(0.1)
  assert opt_lib.get_optimizer(tx, learning_rate=5.0) is tx
  assert opt_lib.get_optimizer(lambda: tx) is tx
  with pytest.raises(TypeError, match='callable must return'):
    opt_lib.get_optimizer(lambda: 3)
  with pytest.raises(TypeError, match='optimizer must be'):
    opt_lib.get_optimizer(3)


def test_get_optimizer_unknown_name_lists_known_ones():
  with pytest.raises(ValueError) as e:
    opt_lib.get_optimizer('Adadelta')
  for name in ('Adagrad', 'Adam', 'Ftrl', 'RMSProp', 'SGD', 'Adadelta'):
    assert name in str(e.value)


def test_default_learning_rates():
  assert opt_lib.linear_learning_rate(100) == pytest.approx(0.1)
  assert opt_lib.linear_learning_rate(4) == pytest.approx(0.2)
  assert opt_lib.linear_learning_rate(0) == pytest.approx(0.2)
  assert opt_lib.linear_learning_rate(
      10, cap=opt_lib.WIDE_AND_DEEP_LINEAR_LEARNING_RATE) == pytest.approx(0.005)
  assert opt_lib.linear_learning_rate(
      1_000_000, cap=opt_lib.WIDE_AND_DEEP_LINEAR_LEARNING_RATE) == pytest.approx(0.001)
  assert opt_lib.DNN_LEARNING_RATE == 0.05
  assert opt_lib.BASELINE_LEARNING_RATE == 0.3


def test_ftrl_inside_multi_transform_updates_only_its_part():
  # Wide & deep gives each part its own optimizer over disjoint parameters.
  params = {'linear': {'w': jnp.asarray([1.0, -2.0])}, 'dnn': {'k': jnp.asarray([0.5, 0.25])}}
  grads = {'linear': {'w': jnp.asarray([0.3, 0.1])}, 'dnn': {'k': jnp.asarray([1.0, -1.0])}}
  tx = optax.multi_transform({'linear': opt_lib.ftrl(0.1), 'dnn': optax.sgd(0.5)},
                             {'linear': 'linear', 'dnn': 'dnn'})
  out, _ = _run(tx, params, grads, 2)
  w, _, _ = _numpy_ftrl([1.0, -2.0], [0.3, 0.1], 2, lr=0.1)
  np.testing.assert_allclose(out['linear']['w'], w, rtol=1e-5)
  np.testing.assert_allclose(out['dnn']['k'], [0.5 - 1.0, 0.25 + 1.0], rtol=1e-6)
