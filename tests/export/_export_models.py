"""Tiny models (canned and custom) for the export tests: data, columns, training, references.

Data: `age` (float), `color` (vocabulary, 'purple' is out of vocabulary), `city` (hashed),
`k` (identity ids), `x` (4 floats, for the custom model_fn). Every model trains 20 steps.
"""
from __future__ import annotations

import os

import flax.linen as nn
import jax
import numpy as np
import optax

import jestimator as je
from jestimator.canned import baseline, dnn, dnn_linear_combined, linear
from jestimator import columns as fc
from jestimator import export

COLORS = ['red', 'green', 'blue']
BATCH_SIZES = (1, 7, 1000)


def make_raw(n: int, seed: int = 0, oov: float = 0.15) -> dict[str, np.ndarray]:
  """Raw features; about `oov` of the colors and cities were never seen in training."""
  rng = np.random.default_rng(seed)
  color = np.array(COLORS + ['purple'], object)[rng.integers(0, 3, n)]
  color[rng.random(n) < oov] = 'purple'
  city = np.array([f'c{i}' for i in rng.integers(0, 12, n)], object)
  city[rng.random(n) < oov] = 'atlantis'
  return {'age': rng.uniform(18, 80, n).astype(np.float32), 'color': color, 'city': city,
          'k': rng.integers(0, 5, n).astype(np.int64),
          'x': rng.normal(size=(n, 4)).astype(np.float32)}


def _labels(raw):
  score = (raw['age'] - 45) / 15 + (raw['color'] == 'red') - 0.5 * (raw['k'] > 2)
  return score.astype(np.float32)


def custom_model_fn(features, labels, mode):
  """Dense -> relu -> BatchNorm -> Dense(1) over `x`; predicts logits and a probability."""
  h = nn.relu(nn.Dense(8)(features['x']))
  h = nn.BatchNorm(use_running_average=mode != je.ModeKeys.TRAIN, momentum=0.5)(h)
  logits = nn.Dense(1)(h)[:, 0]
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'logits': logits,
                                               'probability': jax.nn.sigmoid(logits)})
  loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return je.EstimatorSpec(mode, loss=loss, optimizer=optax.adam(0.05))


CUSTOM_SPEC = {'x': ('float32', [4])}


def _columns(vocab_file: str):
  age = fc.numeric_column('age')
  color = fc.categorical_column_with_vocabulary_list('color', COLORS, num_oov_buckets=2)
  color_file = fc.categorical_column_with_vocabulary_file('color', vocab_file, default_value=0)
  city = fc.categorical_column_with_hash_bucket('city', 30)
  k = fc.categorical_column_with_identity('k', 5)
  cross = fc.crossed_column([fc.bucketized_column(age, [30.0, 50.0]), 'city'], 50)
  return age, color, color_file, city, k, cross


def build(kind: str, model_dir: str, vocab_file: str):
  """`(estimator, label function, serving_input_fn or None)` of one kind of model."""
  age, color, color_file, city, k, cross = _columns(vocab_file)
  config = je.RunConfig(seed=0, log_step_count_steps=1000)
  yes_no = lambda raw: np.where(_labels(raw) > 0, 'yes', 'no').astype(object)
  binary = lambda raw: (_labels(raw) > 0).astype(np.int64)
  three = lambda raw: np.digitize(_labels(raw), [-0.5, 0.5]).astype(np.int64)
  if kind == 'dnn':
    cols = [age, fc.embedding_column(city, 3), fc.indicator_column(color)]
    return dnn.DNNClassifier([8], cols, model_dir=model_dir, label_vocabulary=['no', 'yes'],
                             config=config), yes_no, None
  if kind == 'linear':
    return linear.LinearClassifier([age, color, city, k, cross], model_dir=model_dir, n_classes=3,
                                   config=config), three, None
  if kind == 'wide_deep':
    return dnn_linear_combined.DNNLinearCombinedClassifier(
        model_dir=model_dir, linear_feature_columns=[color_file, city, cross],
        dnn_feature_columns=[age, fc.embedding_column(city, 3), fc.indicator_column(color_file)],
        dnn_hidden_units=[8], label_vocabulary=['no', 'yes'], config=config), yes_no, None
  if kind == 'regressor':
    return dnn.DNNRegressor([8], [age, fc.indicator_column(color), fc.indicator_column(k)],
                               model_dir=model_dir, config=config), _labels, None
  if kind == 'baseline':
    return baseline.BaselineClassifier(model_dir=model_dir, config=config), binary, (
        export.build_raw_serving_input_fn({'age': ('float32', [1])}))
  if kind == 'custom':
    return je.Estimator(custom_model_fn, model_dir, config=config), binary, (
        export.build_raw_serving_input_fn(CUSTOM_SPEC))
  raise ValueError(kind)


KINDS = ('dnn', 'linear', 'wide_deep', 'regressor', 'baseline', 'custom')


def train(est, label_fn, steps: int = 20, batch: int = 32):
  raw = make_raw(400, seed=1, oov=0.1)
  labels = label_fn(raw)

  def input_fn():
    for i in range(steps):
      idx = (np.arange(batch) + i * batch) % len(labels)
      yield {k: raw[k][idx] for k in input_keys(est)}, labels[idx]
  est.train(input_fn, max_steps=steps)
  return est


class Models:
  """Trains and exports each kind of model on first use (once per test session)."""

  def __init__(self, root):
    self.root = root
    self.vocab_file = os.path.join(root, 'colors.txt')
    with open(self.vocab_file, 'w') as f:
      f.write('\n'.join(COLORS) + '\n')
    self._done = {}

  def get(self, kind: str):
    """`(estimator, export path)`; the export is `model_dir/export/<timestamp>`."""
    if kind not in self._done:
      est, label_fn, serving_input_fn = build(kind, os.path.join(self.root, kind),
                                              self.vocab_file)
      train(est, label_fn)
      path = est.export_saved_model(os.path.join(est.model_dir, 'export'), serving_input_fn)
      self._done[kind] = (est, path)
    return self._done[kind]


def input_keys(est):
  """The raw features an estimator reads: a model without feature columns takes only `x`."""
  return ['x'] if est.feature_columns is None else list(make_raw(1))


def estimator_predict(est, raw):
  """`Estimator.predict` on one batch of raw features, as a dict of arrays."""
  feats = {k: raw[k] for k in input_keys(est)}
  return next(iter(est.predict(lambda: iter([feats]), yield_single_examples=False)))
