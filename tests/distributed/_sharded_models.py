"""Models and inputs of the sharded-state tests (8-device worker, 2-process worker, reference).

A canned wide & deep classifier over 4 hashed columns of 1024 buckets (linear part: FTRL, DNN
part: Adagrad, combined by `multi_transform`), and a custom model_fn whose table trains with Adam
inside `masked` and `MultiSteps`.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

import jestimator as je
from jestimator import distributed as jd

BUCKETS = 1024
N_CAT = 4
DIM = 8
GLOBAL_BATCH = 32
# Shards every table (embedding 32 KiB, linear weights 4 KiB), not the DNN kernel ([33, 16],
# 2 KiB): both kinds of parameter appear in one state.
PARTITIONER = jd.MinSizePartitioner(min_shard_bytes=4096)

_rng = np.random.default_rng(0)
ROWS = 512
X = {f'C{i}': _rng.integers(0, 10**9, ROWS).astype(np.int64) for i in range(N_CAT)}
X['I0'] = _rng.normal(size=ROWS).astype(np.float32)
Y = (_rng.random(ROWS) < 0.3 + 0.4 * (X['C0'] % 2)).astype(np.float32)
IDS = _rng.integers(0, 4096, ROWS).astype(np.int32)


def columns(buckets: int = BUCKETS):
  from jestimator import columns as fc
  hashed = [fc.categorical_column_with_hash_bucket(f'C{i}', buckets, dtype=np.int64)
            for i in range(N_CAT)]
  deep = [fc.numeric_column('I0')] + [fc.embedding_column(c, dimension=DIM) for c in hashed]
  return hashed, deep


def wide_deep(model_dir, strategy=None, buckets: int = BUCKETS, warm_start_from=None, **config):
  from jestimator import canned
  hashed, deep = columns(buckets)
  return canned.DNNLinearCombinedClassifier(
      linear_feature_columns=hashed, dnn_feature_columns=deep, dnn_hidden_units=[16],
      model_dir=model_dir, config=je.RunConfig(strategy=strategy, seed=5, **config),
      warm_start_from=warm_start_from)


def train_input_fn(start: int = 0):
  """Global batch `s` (from `start`) is rows `32s .. 32s+31` (mod 512); process `i` of `n`
  feeds its slice, so any process count trains on the same global batches."""

  def input_fn(input_context):
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    for s in range(start, start + 10_000):
      rows = ((np.arange(GLOBAL_BATCH) + GLOBAL_BATCH * s) % ROWS).reshape(n, -1)[i]
      yield {k: v[rows] for k, v in X.items()}, Y[rows]

  return input_fn


def eval_input_fn(rows: int = 64):
  def input_fn(input_context):
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    local = np.arange(rows).reshape(n, -1)[i]
    return iter([({k: v[local] for k, v in X.items()}, Y[local])])

  return input_fn


def adam_model_fn(features, labels, mode):
  """A 4096 x 8 table trained by Adam (masked), the rest by SGD, gradients summed over 2 steps."""
  emb = nn.Embed(4096, 8, name='table')(features['ids'])
  pred = nn.Dense(1, name='out')(emb)[:, 0]
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'y': pred})
  loss = jnp.mean((pred - labels) ** 2)
  is_table = lambda p: {k: k == 'table' for k in p}  # noqa: E731
  optimizer = optax.MultiSteps(optax.chain(
      optax.masked(optax.adam(0.05), is_table),
      optax.masked(optax.sgd(0.1), lambda p: {k: not v for k, v in is_table(p).items()})),
      every_k_schedule=2)
  return je.EstimatorSpec(mode, loss=loss, optimizer=optimizer)


def adam_input_fn(input_context):
  n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
  for s in range(10_000):
    rows = ((np.arange(GLOBAL_BATCH) + GLOBAL_BATCH * s) % ROWS).reshape(n, -1)[i]
    yield {'ids': IDS[rows]}, X['I0'][rows]
