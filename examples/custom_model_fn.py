"""A custom model_fn with dropout and BatchNorm: train, evaluate and predict on synthetic data.

Flax layers are built inline, as in a `@nn.compact` method; the Estimator supplies the per-step
dropout key and keeps BatchNorm's `batch_stats` in the train state, so the model_fn needs no
plumbing for either. Run: `python examples/custom_model_fn.py`.
"""
import logging
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jestimator as je

logging.basicConfig(level=logging.INFO, format='%(message)s', force=True)


def model_fn(features, labels, mode, params):
  training = mode == je.ModeKeys.TRAIN
  x = features['x']
  for width in params['hidden']:
    x = nn.Dense(width)(x)
    x = nn.BatchNorm(use_running_average=not training, momentum=0.9)(x)
    x = nn.relu(x)
    x = nn.Dropout(params['dropout'], deterministic=not training)(x)
  logits = nn.Dense(1)(x)[:, 0]
  probabilities = jax.nn.sigmoid(logits)
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'probability': probabilities,
                                               'class_id': (logits > 0).astype(jnp.int32)})
  loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return je.EstimatorSpec(
      mode, loss=loss, optimizer=optax.adam(params['learning_rate']),
      eval_metrics={'accuracy': je.metrics.accuracy(labels, (logits > 0).astype(jnp.float32)),
                    'auc': je.metrics.auc(labels, probabilities)})


def make_data(n, seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 10)).astype(np.float32)
  y = ((x[:, 0] * x[:, 1] + np.sin(3 * x[:, 2]) + 0.3 * rng.normal(size=n)) > 0)
  return x, y.astype(np.float32)


def main():
  x_train, y_train = make_data(4000, seed=0)
  x_test, y_test = make_data(1000, seed=1)
  estimator = je.Estimator(
      model_fn, model_dir=tempfile.mkdtemp(prefix='custom_model_fn_'),
      params={'hidden': [64, 32], 'dropout': 0.1, 'learning_rate': 3e-3},
      config=je.RunConfig(seed=0, save_checkpoints_steps=500, log_step_count_steps=250))
  estimator.train(je.inputs.numpy_input_fn({'x': x_train}, y_train, batch_size=64,
                                           num_epochs=None, shuffle=True), max_steps=1000)
  results = estimator.evaluate(je.inputs.numpy_input_fn({'x': x_test}, y_test, batch_size=256,
                                                        shuffle=False))
  print('evaluation:', {k: round(v, 4) if isinstance(v, float) else v
                        for k, v in sorted(results.items())})
  for i, pred in enumerate(estimator.predict(je.inputs.numpy_input_fn(
      {'x': x_test[:3]}, shuffle=False))):
    print(f'row {i}: P(y=1) = {pred["probability"]:.3f}, class {pred["class_id"]}, '
          f'label {int(y_test[i])}')
  return results


if __name__ == '__main__':
  main()
