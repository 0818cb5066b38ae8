"""Bad input gets a clear error before any state or file changes (model_dir left untouched)."""
from __future__ import annotations

import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import _models
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.mode_keys import ModeKeys
from jestimator.spec import EstimatorSpec


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A model_dir holding a checkpoint at step 2 plus an unrelated user file."""
  model_dir = str(tmp_path_factory.mktemp('errors') / 'model')
  x, y = _models.make_data(100)
  est = Estimator(_models.linear_model_fn(), model_dir)
  est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False),
            steps=2)
  with open(os.path.join(model_dir, 'notes.txt'), 'w') as f:
    f.write('mine')
  return model_dir


def _unchanged(model_dir, call, error, match):
  before = _models.dir_snapshot(model_dir)
  with pytest.raises(error, match=match):
    call()
  assert _models.dir_snapshot(model_dir) == before


def _gen(*batches):
  return lambda: iter(batches)


X = np.ones((6, 4), np.float32)
Y = np.zeros(6, np.float32)


@pytest.mark.parametrize('verb', ['train', 'evaluate', 'predict'])
@pytest.mark.parametrize('batches,error,match', [
    pytest.param([(X, Y)], TypeError, 'features as a dict', id='non_dict_features'),
    pytest.param([({'x': X, 'w': np.ones(5, np.float32)}, Y)], ValueError,
                 r"disagree on the batch size.*'x'.*6.*'w'.*5", id='batch_sizes_disagree'),
    pytest.param([({'x': X, 'name': np.array(['a'] * 6)}, Y)], TypeError,
                 r"feature 'name'.*feature columns", id='strings'),
])
def test_bad_batches(trained, verb, batches, error, match):
  est = Estimator(_models.linear_model_fn(), trained)
  call = {'train': lambda: est.train(_gen(*batches), steps=3),
          'evaluate': lambda: est.evaluate(_gen(*batches)),
          'predict': lambda: list(est.predict(_gen(*batches)))}[verb]
  _unchanged(trained, call, error, match)


@pytest.mark.parametrize('verb,mode', [('train', 'train'), ('evaluate', 'eval')])
def test_labels_missing(trained, verb, mode):
  est = Estimator(_models.linear_model_fn(), trained)
  fn = inputs.numpy_input_fn({'x': X}, batch_size=3, shuffle=False)
  _unchanged(trained, lambda: getattr(est, verb)(fn), ValueError,
             f"labels are required in mode '{mode}'")


def test_labels_given_to_a_model_fn_without_labels(trained):
  def model_fn(features, mode):
    out = nn.Dense(1)(features['x'])[:, 0]
    return EstimatorSpec(mode, predictions=out, loss=jnp.mean(out), optimizer=optax.sgd(0.1))
  est = Estimator(model_fn, trained)
  fn = inputs.numpy_input_fn({'x': X}, Y, batch_size=3, shuffle=False)
  _unchanged(trained, lambda: est.evaluate(fn), ValueError, 'takes no "labels" argument')


def test_bad_input_in_a_fresh_model_dir_creates_nothing(tmp_path):
  model_dir = str(tmp_path / 'fresh')
  est = Estimator(_models.linear_model_fn(), model_dir)
  with pytest.raises(TypeError):
    est.train(_gen((X, Y)), steps=1)
  with pytest.raises(ValueError, match='no batches'):
    est.train(_gen(), steps=1)
  assert not os.path.exists(model_dir)


def _returns(spec_fn):
  def model_fn(features, labels, mode):
    out = nn.Dense(1)(features['x'])[:, 0]
    return spec_fn(mode, out, labels)
  return model_fn


@pytest.mark.parametrize('model_fn,error,match', [
    pytest.param(_returns(lambda mode, out, labels: {'loss': jnp.mean(out)}), TypeError,
                 'must return an EstimatorSpec, got dict', id='dict'),
    pytest.param(_returns(lambda mode, out, labels: EstimatorSpec(
        mode, predictions=out, loss=(out - labels) ** 2, optimizer=optax.sgd(0.1))),
                 ValueError, r'scalar .*\(6,\)', id='non_scalar_loss'),
    pytest.param(_returns(lambda mode, out, labels: EstimatorSpec(
        ModeKeys.EVAL, loss=jnp.mean(out))), ValueError, "for mode 'eval'", id='wrong_mode'),
])
def test_bad_model_fn(tmp_path, trained, model_fn, error, match):
  est = Estimator(model_fn, trained)
  fn = inputs.numpy_input_fn({'x': X}, Y, batch_size=6, shuffle=False)
  _unchanged(trained, lambda: est.train(fn, steps=1), error, match)
  fresh = str(tmp_path / 'fresh')
  with pytest.raises(error, match=match):
    Estimator(model_fn, fresh).train(fn, steps=1)
  assert not os.path.exists(fresh)


def test_checkpoint_not_matching_the_model(trained):
  def wider(features, labels, mode):
    out = nn.Dense(2)(features['x'])[:, 0]
    if mode == ModeKeys.PREDICT:
      return EstimatorSpec(mode, predictions=out)
    loss = jnp.mean((out - labels) ** 2)
    return EstimatorSpec(mode, predictions=out, loss=loss, optimizer=optax.sgd(0.1))

  est = Estimator(wider, trained)
  fn = inputs.numpy_input_fn({'x': X}, Y, batch_size=6, shuffle=False)
  match = r"params/Dense_0/bias.*\(1,\).*\(2,\)"
  _unchanged(trained, lambda: est.train(fn, steps=1), ValueError, match)
  _unchanged(trained, lambda: est.evaluate(fn), ValueError, match)
  _unchanged(trained, lambda: list(est.predict(fn)), ValueError, match)

  def renamed(features, labels, mode):
    out = nn.Dense(1, name='head')(features['x'])[:, 0]
    if mode == ModeKeys.PREDICT:
      return EstimatorSpec(mode, predictions=out)
    loss = jnp.mean((out - labels) ** 2)
    return EstimatorSpec(mode, predictions=out, loss=loss, optimizer=optax.sgd(0.1))

  _unchanged(trained, lambda: Estimator(renamed, trained).train(fn, steps=1), ValueError,
             'params/Dense_0|params/head')


def test_existing_model_dir_contents_survive_training(trained):
  x, y = _models.make_data(20)
  Estimator(_models.linear_model_fn(), trained).train(
      inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False), steps=1)
  with open(os.path.join(trained, 'notes.txt')) as f:
    assert f.read() == 'mine'


def test_bad_hooks_and_arguments(trained):
  est = Estimator(_models.linear_model_fn(), trained)
  fn = inputs.numpy_input_fn({'x': X}, Y, batch_size=6, shuffle=False)
  _unchanged(trained, lambda: est.train(fn, hooks=[object()], steps=1), TypeError, 'Hook')
  _unchanged(trained, lambda: est.train(fn, steps=1, max_steps=3), ValueError, 'steps')


def test_prediction_without_batch_dimension(trained):
  def model_fn(features, labels, mode):
    out = nn.Dense(1)(features['x'])[:, 0]
    if mode == ModeKeys.PREDICT:
      return EstimatorSpec(mode, predictions={'out': out, 'total': jnp.sum(out)})
    return EstimatorSpec(mode, loss=jnp.mean((out - labels) ** 2), optimizer=optax.sgd(0.1))

  est = Estimator(model_fn, trained)
  fn = inputs.numpy_input_fn({'x': X}, batch_size=4, shuffle=False)
  _unchanged(trained, lambda: list(est.predict(fn)), ValueError,
             r"predictions\['total'\] has shape \(\).*batch dimension")


@pytest.mark.parametrize('verb,kwargs,error,match', [
    ('train', {'steps': True}, TypeError, 'steps must be a positive int or None, got bool'),
    ('train', {'max_steps': 2.0}, TypeError, 'max_steps must be a positive int.*float'),
    ('train', {'steps': '3'}, TypeError, "steps must be a positive int.*str '3'"),
    ('train', {'steps': 0}, ValueError, 'Must specify steps > 0'),
    ('evaluate', {'steps': 2.5}, TypeError, 'steps must be a positive int.*float 2.5'),
    ('evaluate', {'steps': '3'}, TypeError, "steps must be a positive int.*str '3'"),
    ('evaluate', {'steps': False}, TypeError, 'got bool'),
    ('evaluate', {'steps': -1}, ValueError, 'Must specify steps > 0'),
])
def test_steps_must_be_positive_ints(trained, verb, kwargs, error, match):
  est = Estimator(_models.linear_model_fn(), trained)
  fn = inputs.numpy_input_fn({'x': X}, Y, batch_size=6, shuffle=False)
  _unchanged(trained, lambda: getattr(est, verb)(fn, **kwargs), error, match)


def test_numpy_integer_steps_are_accepted(tmp_path):
  est = Estimator(_models.linear_model_fn(), str(tmp_path))
  fn = inputs.numpy_input_fn({'x': X}, Y, batch_size=2, num_epochs=None, shuffle=False)
  est.train(fn, steps=np.int64(2))
  assert est.get_variable_value('global_step') == 2
  assert est.evaluate(fn, steps=np.int32(1))['global_step'] == 2


@pytest.mark.parametrize('verb', ['train', 'evaluate', 'predict'])
def test_data_instead_of_an_input_fn_names_the_wrapper_without_printing_it(trained, verb):
  pd = pytest.importorskip('pandas')
  est = Estimator(_models.linear_model_fn(), trained)
  df = pd.DataFrame({'x': np.arange(1000.0) + 0.123456, 'y': np.zeros(1000)})
  with pytest.raises(TypeError, match=r'got a pandas.*DataFrame: wrap .*pandas_input_fn\(') as e:
    run = getattr(est, verb)(df)
    list(run) if verb == 'predict' else None
  assert '0.123456' not in str(e.value) and len(str(e.value)) < 300
  with pytest.raises(TypeError, match=r'numpy.ndarray: wrap .*numpy_input_fn\('):
    run = getattr(est, verb)(X)
    list(run) if verb == 'predict' else None


def test_saving_listeners_need_checkpointing(tmp_path):
  from jestimator.hooks import CheckpointSaverListener
  from jestimator.run_config import RunConfig

  class Passive(CheckpointSaverListener):
    def __init__(self):
      self.saved = []

    def after_save(self, step):
      self.saved.append(step)

  class Asking(Passive):  # asks for its own saves: works without a checkpoint cadence
    def wants_save(self, ctx):
      return ctx.crossed(2)

  off = RunConfig(save_checkpoints_steps=None, save_checkpoints_secs=None)
  model_dir = str(tmp_path / 'off')
  est = Estimator(_models.linear_model_fn(), model_dir, config=off)
  fn = inputs.numpy_input_fn({'x': X}, Y, batch_size=1, num_epochs=None, shuffle=False)
  with pytest.raises(ValueError, match=r"saving_listeners \['Passive'\] need periodic "
                                       'checkpoints.*both None'):
    est.train(fn, steps=4, saving_listeners=[Passive()])
  assert not os.path.exists(model_dir)
  asking = Asking()
  est.train(fn, steps=4, saving_listeners=[asking])
  assert asking.saved == [2, 4]
  with pytest.raises(TypeError, match='CheckpointSaverListener'):
    est.train(fn, steps=1, saving_listeners=[object()])
  on = Estimator(_models.linear_model_fn(), str(tmp_path / 'on'),
                 config=RunConfig(save_checkpoints_steps=3))
  passive = Passive()
  on.train(fn, steps=4, saving_listeners=[passive])
  assert passive.saved == [0, 3, 4]  # 0: the save when training starts, as TF
