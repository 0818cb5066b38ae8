"""Model and input shared by the multi-process workers and the single-process reference."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

import jestimator as je

GLOBAL_BATCH = 16
_rng = np.random.default_rng(0)
X = _rng.normal(size=(64, 5)).astype(np.float32)
Y = (X @ _rng.normal(size=5)).astype(np.float32)


def model_fn(features, labels, mode):
  h = nn.relu(nn.Dense(16)(features['x']))
  pred = nn.Dense(1)(h)[:, 0]
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'y': pred})
  loss = jnp.mean((pred - labels) ** 2)
  return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.05),
                          eval_metrics={'mae': je.metrics.mean_absolute_error(labels, pred)})


def train_input_fn(labels=Y):
  """Global batch `s` is rows `16s .. 16s+15` (mod 64); process `i` of `n` feeds its slice."""

  def input_fn(input_context):
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    for s in range(10_000):
      rows = (np.arange(GLOBAL_BATCH) + GLOBAL_BATCH * s) % len(X)
      local = rows.reshape(n, -1)[i]
      yield {'x': X[local]}, labels[local]

  return input_fn


def eval_input_fn(labels=Y, rows=32):
  """One global batch of the first `rows` rows, split over the processes."""

  def input_fn(input_context):
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    local = np.arange(rows).reshape(n, -1)[i]
    return iter([({'x': X[local]}, labels[local])])

  return input_fn


def predict_input_fn(rows=8):
  def input_fn(input_context):
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    return iter([{'x': X[np.arange(rows).reshape(n, -1)[i]]}])

  return input_fn


def dnn_classifier(model_dir, config):
  """A small DNNClassifier trained with plain SGD (so a mis-scaled gradient shows)."""
  from jestimator import columns
  from jestimator.canned import DNNClassifier
  return DNNClassifier([16, 8], [columns.numeric_column('x', shape=(5,))], model_dir=model_dir,
                       optimizer=optax.sgd(0.1), config=config)


CLASS_LABELS = (Y > 0).astype(np.int32)
