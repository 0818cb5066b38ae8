"""EstimatorSpec validation per mode, and ModeKeys."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jestimator import metrics
from jestimator.export_output import PredictOutput, RegressionOutput
from jestimator.hooks import Hook
from jestimator.mode_keys import ModeKeys
from jestimator import train_ops
from jestimator.spec import EstimatorSpec


def test_mode_keys_are_tf_strings():
  assert (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT) == ('train', 'eval', 'infer')


def test_train_needs_loss_and_optimizer():
  with pytest.raises(ValueError, match="'train' needs a loss"):
    EstimatorSpec(ModeKeys.TRAIN, optimizer=optax.sgd(0.1))
  with pytest.raises(ValueError, match='exactly one of optimizer .* and train_op .*got neither'):
    EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0))
  with pytest.raises(ValueError, match='exactly one of optimizer .* and train_op .*got both'):
    EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0), optimizer=optax.sgd(0.1),
                  train_op=train_ops.minimize(optax.sgd(0.1)))
  with pytest.raises(TypeError, match='train_op got an optax GradientTransformation'):
    EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0), train_op=optax.sgd(0.1))
  with pytest.raises(TypeError, match='must be a jestimator.train_ops.TrainOp'):
    EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0), train_op=object())
  with pytest.raises(ValueError, match=r'losses\['):
    EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0), optimizer=optax.sgd(0.1),
                  losses={'g': jnp.ones(3)})
  # EVAL / PREDICT ignore train_op, as TF's EstimatorSpec.
  EstimatorSpec(ModeKeys.EVAL, loss=jnp.float32(1.0), train_op=train_ops.minimize(optax.sgd(1)))
  with pytest.raises(TypeError, match='GradientTransformation'):
    EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0), optimizer='adam')
  spec = EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0), optimizer=optax.sgd(0.1))
  assert spec.training_hooks == ()


def test_eval_needs_loss_predict_needs_predictions():
  with pytest.raises(ValueError, match="'eval' needs a loss"):
    EstimatorSpec(ModeKeys.EVAL)
  with pytest.raises(ValueError, match="'infer' needs predictions"):
    EstimatorSpec(ModeKeys.PREDICT)
  EstimatorSpec(ModeKeys.EVAL, loss=jnp.float32(0.5))  # no optimizer needed


def test_unknown_mode():
  with pytest.raises(ValueError, match="'predict'"):
    EstimatorSpec('predict', predictions=jnp.zeros(3))


@pytest.mark.parametrize('shape', [(2,), (3, 1), (1, 1)])
def test_loss_must_be_scalar(shape):
  with pytest.raises(ValueError, match=r'scalar .*' + str(shape).replace('(', r'\(').replace(
      ')', r'\)')):
    EstimatorSpec(ModeKeys.EVAL, loss=jnp.zeros(shape))


def test_loss_of_shape_one_is_reshaped_to_scalar():
  spec = EstimatorSpec(ModeKeys.EVAL, loss=jnp.array([2.5]))
  assert spec.loss.shape == () and float(spec.loss) == 2.5


def test_eval_metrics_validation():
  loss = jnp.float32(0.0)
  with pytest.raises(ValueError, match="reserved name 'loss'"):
    EstimatorSpec(ModeKeys.EVAL, loss=loss, eval_metrics={'loss': metrics.mean(jnp.ones(2))})
  with pytest.raises(ValueError, match="reserved name 'global_step'"):
    EstimatorSpec(ModeKeys.EVAL, loss=loss,
                  eval_metrics={'global_step': metrics.mean(jnp.ones(2))})
  with pytest.raises(TypeError, match=r"eval_metrics\['acc'\]"):
    EstimatorSpec(ModeKeys.EVAL, loss=loss, eval_metrics={'acc': (1.0, None)})
  with pytest.raises(TypeError, match='must be a dict'):
    EstimatorSpec(ModeKeys.EVAL, loss=loss, eval_metrics=[metrics.mean(jnp.ones(2))])


def test_predict_export_outputs_default_and_validation():
  preds = {'y': jnp.zeros(3)}
  spec = EstimatorSpec(ModeKeys.PREDICT, predictions=preds)
  assert list(spec.export_outputs) == ['serving_default']
  assert isinstance(spec.export_outputs['serving_default'], PredictOutput)
  with pytest.raises(TypeError, match=r"export_outputs\['serving_default'\]"):
    EstimatorSpec(ModeKeys.PREDICT, predictions=preds, export_outputs={'serving_default': preds})
  spec = EstimatorSpec(ModeKeys.PREDICT, predictions=preds,
                       export_outputs={'regress': RegressionOutput(preds['y'])})
  assert list(spec.export_outputs) == ['regress']


def test_hooks_become_tuples_and_replace_keeps_mode():
  h = Hook()
  spec = EstimatorSpec(ModeKeys.EVAL, loss=jnp.float32(1.0), evaluation_hooks=[h])
  assert spec.evaluation_hooks == (h,)
  spec2 = spec._replace(loss=jnp.float32(3.0))
  assert float(spec2.loss) == 3.0 and spec2.mode == ModeKeys.EVAL
  with pytest.raises(ValueError, match='cannot change mode'):
    spec._replace(mode=ModeKeys.TRAIN)
  with pytest.raises(Exception):  # frozen
    spec.loss = np.float32(2.0)


@pytest.mark.parametrize('name,hint', [('eval_metric_ops', 'eval_metrics='),
                                       ('training_chief_hooks', 'training_hooks='),
                                       ('scaffold', 'warm_start_from')])
def test_tf_only_arguments_say_what_to_use_instead(name, hint):
  with pytest.raises(TypeError, match=f'no {name}=.*{hint}'):
    EstimatorSpec(ModeKeys.TRAIN, loss=jnp.float32(1.0), **{name: object()})
  # The signature stays the dataclass's (introspection, dataclasses.replace).
  import inspect
  assert 'optimizer' in inspect.signature(EstimatorSpec).parameters
  spec = EstimatorSpec(ModeKeys.EVAL, loss=jnp.float32(1.0))
  assert spec._replace(loss=jnp.float32(2.0)).loss == 2.0
