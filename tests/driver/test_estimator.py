"""Estimator.train: steps vs max_steps, end of input, resumption, loops, determinism, state."""
from __future__ import annotations

import os

import numpy as np
import pytest

import _models
from jestimator import hooks as hooks_lib
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig


def _repeat(x, y, batch_size=16, seed=0):
  return inputs.numpy_input_fn({'x': x}, y, batch_size=batch_size, num_epochs=None, shuffle=True,
                               seed=seed)


def _step(est) -> int:
  return int(est.get_variable_value('global_step'))


class _Boundaries(hooks_lib.Hook):
  """Records `(ctx.step, ctx.num_steps)` of every dispatch."""

  def __init__(self):
    self.seen = []

  def after_step(self, ctx, values):
    self.seen.append((ctx.step, ctx.num_steps))


def test_steps_and_max_steps(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  fn = _repeat(x, y)
  est.train(fn, max_steps=8)
  assert _step(est) == 8
  boundaries = _Boundaries()
  est.train(fn, max_steps=8, hooks=[boundaries])  # already reached: a no-op
  assert _step(est) == 8 and boundaries.seen == []
  est.train(fn, steps=3)  # counts on from the current step
  assert _step(est) == 11
  # A new Estimator object on the same model_dir resumes from its latest checkpoint.
  other = Estimator(_models.linear_model_fn(), model_dir)
  other.train(fn, steps=2)
  assert _step(other) == 13
  other.train(fn, max_steps=15)
  assert _step(other) == 15


# Non-int steps (1.5, True, '3') are TypeErrors: tests/test_estimator_errors.py.
@pytest.mark.parametrize('kwargs', [dict(steps=2, max_steps=10), dict(steps=0), dict(steps=-1),
                                    dict(max_steps=0), dict(max_steps=-5)])
def test_bad_steps_are_value_errors(data, model_dir, kwargs):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  with pytest.raises(ValueError, match='steps'):
    est.train(_repeat(x, y), **kwargs)
  assert not os.path.exists(model_dir) or os.listdir(model_dir) == []


def test_end_of_input_ends_training_and_next_call_makes_a_new_pass(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  one_epoch = inputs.numpy_input_fn({'x': x}, y, batch_size=32, num_epochs=1, shuffle=False)
  est.train(one_epoch, steps=100)
  assert _step(est) == 4  # 100 rows in batches of 32: 4 steps, the last one short
  est.train(one_epoch)  # epoch by epoch, as TF users did: the next call runs the next pass
  assert _step(est) == 8
  # A resumed input that is not at its end continues where it stopped (2 of 4 batches left).
  est.train(one_epoch, steps=2)
  est2 = Estimator(_models.linear_model_fn(), model_dir)
  est2.train(one_epoch)
  assert _step(est2) == 12


def test_steps_per_loop_honours_steps_exactly(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(steps_per_loop=4, save_checkpoints_steps=3))
  b = _Boundaries()
  est.train(_repeat(x, y), steps=10, hooks=[b])
  assert _step(est) == 10
  assert b.seen == [(4, 4), (8, 4), (10, 2)]  # hooks run at loop boundaries; the last is shorter
  # Checkpoints at the first boundary past each multiple of 3 (3 -> 4, 6 -> 8, 9 -> 10).
  assert sorted(int(d) for d in os.listdir(model_dir) if d.isdigit()) == [0, 4, 8, 10]
  # One epoch of 100 rows in batches of 16 (6 full, then 4 rows): the short batch runs alone.
  b = _Boundaries()
  est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=16, shuffle=False), hooks=[b])
  assert b.seen == [(14, 4), (16, 2), (17, 1)] and _step(est) == 17


def test_steps_per_loop_matches_single_steps(data, tmp_path):
  x, y = data
  finals = []
  for k in (1, 4):
    est = Estimator(_models.linear_model_fn(), str(tmp_path / f'k{k}'),
                    config=RunConfig(steps_per_loop=k))
    est.train(_repeat(x, y), steps=10)
    finals.append(_models.checkpoint_params(est))
  for name in finals[0]:
    np.testing.assert_allclose(finals[0][name], finals[1][name], rtol=1e-6, atol=1e-7)


def test_determinism_same_seed_same_params_other_seed_differs(data, tmp_path):
  x, y = data

  def run(name, seed):
    est = Estimator(_models.mlp_model_fn(), str(tmp_path / name), config=RunConfig(seed=seed),
                    params={})
    # seed=None in the input_fn: shuffling follows RunConfig.seed too.
    est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=16, num_epochs=None, shuffle=True),
              max_steps=6)
    return _models.checkpoint_params(est)

  a, b, c = run('a', 1), run('b', 1), run('c', 2)
  assert _models.tree_equal(a, b)
  assert not np.array_equal(a['params/Dense_0/kernel'], c['params/Dense_0/kernel'])


def test_dropout_rng_per_step_and_batch_norm_without_plumbing(data, model_dir):
  x, y = data

  class Losses(hooks_lib.Hook):
    def __init__(self):
      self.losses = []

    def before_step(self, ctx):
      return ['loss']

    def after_step(self, ctx, values):
      self.losses.append(float(values['loss']))

  # lr=0 and the same full batch every step: only dropout can change the loss between steps.
  est = Estimator(_models.mlp_model_fn(), model_dir, params={'lr': 0.0})
  h = Losses()
  est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=100, num_epochs=None, shuffle=False),
            steps=4, hooks=[h])
  assert len(set(h.losses)) == 4, h.losses
  # BatchNorm statistics are updated by the train step (whatever the optimizer does).
  mean = est.get_variable_value('batch_stats/BatchNorm_0/mean')
  var = est.get_variable_value('batch_stats/BatchNorm_0/var')
  assert mean.shape == (8,) and np.any(mean != 0) and np.any(var != 1)
  ev = inputs.numpy_input_fn({'x': x}, y, batch_size=32, shuffle=False)
  assert est.evaluate(ev) == est.evaluate(ev)  # eval is deterministic (no dropout)
  # Inference uses the running averages: a row's prediction does not depend on its batch.
  by_10 = [p['logits'] for p in est.predict(inputs.numpy_input_fn({'x': x}, batch_size=10,
                                                                  shuffle=False))]
  by_100 = [p['logits'] for p in est.predict(inputs.numpy_input_fn({'x': x}, batch_size=100,
                                                                   shuffle=False))]
  np.testing.assert_allclose(by_10, by_100, rtol=1e-5, atol=1e-6)


def test_variable_access_and_paths(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  assert est.latest_checkpoint() is None
  with pytest.raises(ValueError, match='no checkpoint'):
    est.get_variable_names()
  est.train(_repeat(x, y), steps=3)
  assert est.latest_checkpoint() == os.path.join(os.path.abspath(model_dir), '3')
  assert est.get_variable_names() == ['global_step', 'params/Dense_0/bias',
                                      'params/Dense_0/kernel']
  kernel = est.get_variable_value('params/Dense_0/kernel')
  assert kernel.shape == (4, 1) and kernel.dtype == np.float32
  every = _models.checkpoint_params(est)  # the helper other tests use agrees with the API
  assert sorted(every) == est.get_variable_names()
  for name, value in every.items():
    np.testing.assert_array_equal(est.get_variable_value(name), value)
  with pytest.raises(ValueError, match='params/Dense_0/nope'):
    est.get_variable_value('params/Dense_0/nope')
  assert est.eval_dir() == os.path.join(model_dir, 'eval')
  assert est.eval_dir('valid') == os.path.join(model_dir, 'eval_valid')
  assert est.model_dir == model_dir and est.config.model_dir == model_dir


def test_model_dir_and_config(tmp_path):
  fn = _models.linear_model_fn()
  with pytest.raises(ValueError, match='disagree'):
    Estimator(fn, str(tmp_path / 'a'), config=RunConfig(model_dir=str(tmp_path / 'b')))
  est = Estimator(fn, config=RunConfig(model_dir=str(tmp_path / 'c')))
  assert est.model_dir == str(tmp_path / 'c')
  est = Estimator(fn, str(tmp_path / 'd'), config=RunConfig(model_dir=str(tmp_path / 'd')))
  assert est.model_dir == str(tmp_path / 'd')
  est = Estimator(fn)  # a fresh temporary directory
  assert os.path.isdir(est.model_dir) and os.listdir(est.model_dir) == []
  with pytest.raises(TypeError, match='RunConfig'):
    Estimator(fn, config={'seed': 1})


def test_params_are_deep_copied_and_need_a_params_argument(tmp_path):
  params = {'lr': 0.1, 'layers': [8, 4]}
  est = Estimator(_models.mlp_model_fn(), str(tmp_path), params=params)
  params['layers'].append(2)
  assert est.params == {'lr': 0.1, 'layers': [8, 4]}
  est.params['layers'].append(3)
  assert est.params == {'lr': 0.1, 'layers': [8, 4]}
  with pytest.raises(ValueError, match='params'):
    Estimator(_models.linear_model_fn(), str(tmp_path), params={'lr': 0.1})
  with pytest.raises(ValueError, match='features'):
    Estimator(lambda x, labels, mode: None, str(tmp_path))
  with pytest.raises(ValueError, match='hparams'):
    Estimator(lambda features, hparams: None, str(tmp_path))


def test_warm_start(data, tmp_path):
  x, y = data
  source = Estimator(_models.linear_model_fn(), str(tmp_path / 'src'), config=RunConfig(seed=1))
  source.train(_repeat(x, y), steps=5)
  src = _models.checkpoint_params(source)
  fresh = Estimator(_models.linear_model_fn(lr=0.0), str(tmp_path / 'fresh'))
  fresh.train(_repeat(x, y), steps=1)
  init = _models.checkpoint_params(fresh)
  assert not np.array_equal(init['params/Dense_0/kernel'], src['params/Dense_0/kernel'])

  # A plain path: every trainable parameter (lr=0 keeps them as loaded).
  warm = Estimator(_models.linear_model_fn(lr=0.0), str(tmp_path / 'warm'),
                   warm_start_from=source.model_dir)
  warm.train(_repeat(x, y), steps=1)
  got = _models.checkpoint_params(warm)
  for name in ('params/Dense_0/kernel', 'params/Dense_0/bias'):
    np.testing.assert_array_equal(got[name], src[name])

  # WarmStartSettings with a regex: only the bias; the kernel keeps its own initialisation.
  from jestimator.warm_start import WarmStartSettings
  part = Estimator(_models.linear_model_fn(lr=0.0), str(tmp_path / 'part'),
                   warm_start_from=WarmStartSettings(os.path.join(source.model_dir, '5'),
                                                     vars_to_warm_start='.*bias'))
  # evaluate before any checkpoint of its own uses the warm-started variables too.
  ev = inputs.numpy_input_fn({'x': x}, y, batch_size=100, shuffle=False)
  k, b = init['params/Dense_0/kernel'], src['params/Dense_0/bias']
  expected = _models.numpy_logistic_loss(x, y, k, b).mean()
  np.testing.assert_allclose(part.evaluate(ev)['loss'], expected, rtol=1e-5)
  part.train(_repeat(x, y), steps=1)
  got = _models.checkpoint_params(part)
  np.testing.assert_array_equal(got['params/Dense_0/bias'], src['params/Dense_0/bias'])
  np.testing.assert_array_equal(got['params/Dense_0/kernel'], init['params/Dense_0/kernel'])

  # Warm starting applies only while model_dir has no checkpoint of its own.
  source.train(_repeat(x, y), steps=5)
  warm.train(_repeat(x, y), steps=1)
  assert _step(warm) == 2
  np.testing.assert_array_equal(warm.get_variable_value('params/Dense_0/kernel'),
                                src['params/Dense_0/kernel'])


def test_an_input_fn_returning_one_batch_repeats_it_every_step_like_tf(data, tmp_path):
  """TF evaluated the tensors an input_fn returned on every step: 50 steps on the same batch."""
  x, y = data
  xb, yb = x[:8], y[:8]
  est = Estimator(_models.linear_model_fn(lr=0.5), str(tmp_path / 'one'))
  est.train(lambda: ({'x': xb}, yb), steps=50)
  assert _step(est) == 50
  est.train(lambda: ({'x': xb}, yb), max_steps=60)
  assert _step(est) == 60
  # The same as 60 steps over an input repeating that batch.
  ref = Estimator(_models.linear_model_fn(lr=0.5), str(tmp_path / 'ref'))
  ref.train(inputs.numpy_input_fn({'x': xb}, yb, batch_size=8, num_epochs=None, shuffle=False),
            steps=60)
  np.testing.assert_allclose(est.get_variable_value('params/Dense_0/kernel'),
                             ref.get_variable_value('params/Dense_0/kernel'), rtol=1e-6)
  # Without a step limit it would never end: an error before anything changes.
  fresh = Estimator(_models.linear_model_fn(), str(tmp_path / 'fresh'))
  with pytest.raises(ValueError, match='single .* batch.*repeats every step.*steps or max_steps'):
    fresh.train(lambda: ({'x': xb}, yb))
  assert not os.path.exists(fresh.model_dir)
  # evaluate and predict read it once.
  assert est.evaluate(lambda: ({'x': xb}, yb))['global_step'] == 60
  assert len(list(est.predict(lambda: {'x': xb}))) == 8
