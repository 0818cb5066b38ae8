"""Warm starting: which variables are copied, and the errors TF gives too."""
from __future__ import annotations

import flax.linen as nn
import numpy as np
import optax
import pytest

import _models
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.spec import EstimatorSpec
from jestimator.warm_start import WarmStartSettings


def _wider_model_fn(features, labels, mode):
  """The linear model's `Dense_0` plus a layer the linear model's checkpoints do not hold."""
  logits = nn.Dense(1)(features['x'])[:, 0] + nn.Dense(1, name='extra')(features['x'])[:, 0]
  loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return EstimatorSpec(mode, predictions={'logits': logits}, loss=loss, optimizer=optax.sgd(0.0))


@pytest.fixture
def source(tmp_path, data):
  x, y = data
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'src'))
  est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False),
            steps=3)
  return est


@pytest.mark.parametrize('vars_to_warm_start', ['.*', ['.*extra.*', '.*Dense_0.*'], '.*kernel'])
def test_selected_variables_missing_from_the_checkpoint_are_an_error(tmp_path, data, source,
                                                                     vars_to_warm_start):
  x, y = data
  est = Estimator(_wider_model_fn, str(tmp_path / 'wide'),
                  warm_start_from=WarmStartSettings(source.model_dir, vars_to_warm_start))
  fn = inputs.numpy_input_fn({'x': x}, y, batch_size=10, shuffle=False)
  with pytest.raises(ValueError, match=r"does not hold: \[.*'params/extra/kernel'"):
    est.train(fn, steps=1)
  assert est.latest_checkpoint() is None


def test_patterns_of_shared_variables_warm_start_them(tmp_path, data, source):
  x, y = data
  est = Estimator(_wider_model_fn, str(tmp_path / 'wide'),
                  warm_start_from=WarmStartSettings(source.model_dir, '.*Dense_0.*'))
  est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=10, shuffle=False), steps=1)  # lr 0
  for name in ('params/Dense_0/kernel', 'params/Dense_0/bias'):
    np.testing.assert_array_equal(est.get_variable_value(name), source.get_variable_value(name))
  assert not np.array_equal(est.get_variable_value('params/extra/kernel'),
                            source.get_variable_value('params/Dense_0/kernel'))


def test_predict_and_evaluate_warm_started_without_a_checkpoint(tmp_path, data, source):
  """TF: with no checkpoint of its own, predict uses the warm-start variables; the model_fn is
  called in PREDICT mode (no labels), not in TRAIN with labels=None."""
  x, y = data
  modes = []

  def model_fn(features, labels, mode):
    modes.append(mode)
    if mode == 'train' and labels is None:
      raise AssertionError('model_fn called in TRAIN without labels')
    return _models.linear_model_fn()(features, labels, mode)

  est = Estimator(model_fn, str(tmp_path / 'warm'), warm_start_from=source.model_dir)
  fn = inputs.numpy_input_fn({'x': x}, batch_size=50, shuffle=False)
  got = np.array([p['probs'] for p in est.predict(fn)])
  want = np.array([p['probs'] for p in source.predict(fn)])
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert 'train' not in modes
  ev = inputs.numpy_input_fn({'x': x}, y, batch_size=50, shuffle=False)
  assert est.evaluate(ev)['loss'] == pytest.approx(source.evaluate(ev)['loss'], rel=1e-6)
  assert est.latest_checkpoint() is None


@pytest.mark.parametrize('where, message', [
    ('src/4', r"src/4': checkpoint of step 4 does not exist \(deleted by checkpoint retention\?\); "
              r"intact checkpoints in '.*src' are at steps \[0, 3\]"),
    ('src/7', r"src/7': step 7 is not a complete checkpoint \(_CHECKPOINT_METADATA is missing\); "
              r"intact checkpoints in '.*src' are at steps \[0, 3\]"),
    ('empty', r"empty' holds no checkpoint"),
])
def test_warm_start_from_a_missing_or_empty_checkpoint_names_it(tmp_path, data, source, where,
                                                                message):
  """Issue 24 (failed 1): not Orbax's ValueError / KeyError / AttributeError about a step."""
  x, y = data
  (tmp_path / 'src' / '7').mkdir()     # an empty step folder (a half-copied checkpoint)
  (tmp_path / 'empty').mkdir()
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'w'),
                  warm_start_from=str(tmp_path / where))
  with pytest.raises(ValueError, match='warm_start_from .*' + message):
    est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=10, shuffle=False), steps=1)
  assert est.latest_checkpoint() is None
