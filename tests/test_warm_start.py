"""Warm starting: which variables are copied, and the errors TF gives too."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
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
