"""Compile-only memory plans on 8 fake CPU devices (nothing of the state is allocated), started by
test_sharded.py as `python _sharded_compile_worker.py OUT.json` with
XLA_FLAGS=--xla_force_host_platform_device_count=8.

  mem    canned wide & deep, 26 hashed columns of 2^17 buckets x 16 (linear + DNN): the plans
         of replicated and sharded DataParallel
  scale  Criteo size at its bound (26 tables of 1e7 buckets x 16 in the DNN and 26 x 1 in the
         linear part, with their Adagrad and FTRL slots: 33.9 GiB of state): the sharded plan
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import traceback

import jax
import numpy as np

import jestimator as je
from jestimator import canned, columns as fc
from jestimator import distributed as jd

assert jax.device_count() == 8, jax.devices()
OUT = sys.argv[1]
RESULTS: dict = {'errors': {}}


def estimator(buckets, strategy, hidden):
  hashed = [fc.categorical_column_with_hash_bucket(f'C{i}', n, dtype=np.int64)
            for i, n in enumerate(buckets)]
  deep = [fc.numeric_column('I0')] + [fc.embedding_column(c, dimension=16) for c in hashed]
  return canned.DNNLinearCombinedClassifier(
      linear_feature_columns=hashed, dnn_feature_columns=deep, dnn_hidden_units=hidden,
      model_dir=tempfile.mkdtemp(), config=je.RunConfig(strategy=strategy, seed=0))


def input_fn(batch=256):
  rng = np.random.default_rng(0)
  x = {f'C{i}': rng.integers(0, 10**9, batch).astype(np.int64) for i in range(26)}
  x['I0'] = rng.normal(size=batch).astype(np.float32)
  return lambda: iter([(x, (rng.random(batch) < 0.5).astype(np.float32))])


def plan_of(est) -> dict:
  """The plan, and the state's whole bytes split into sharded and replicated leaves."""
  plan = est.memory_plan(input_fn())
  source = est.input_pipeline.open(input_fn(), je.ModeKeys.TRAIN)
  first = source.first('test')
  source.close()
  strategy = est.compiled_model.strategy
  state = strategy.abstract(est.compiled_model.abstract_train_state(first.features, first.labels))
  split = {'sharded': 0, 'replicated': 0}
  for a in jax.tree.leaves(state):
    nbytes = int(np.prod(a.shape, dtype=np.int64)) * np.dtype(a.dtype).itemsize
    split['replicated' if a.sharding.is_fully_replicated else 'sharded'] += nbytes
  fields = dataclasses.asdict(plan)
  fields['largest'] = [dataclasses.asdict(p) for p in plan.largest]
  return {**fields, **split, 'total_bytes': plan.total_bytes, 'summary': plan.summary()}


def check(fn):
  try:
    RESULTS[fn.__name__] = fn()
  except Exception:  # noqa: BLE001 - reported by the test naming the check
    RESULTS['errors'][fn.__name__] = traceback.format_exc()
  return fn


@check
def mem():
  buckets = [1 << 17] * 26
  return {name: plan_of(estimator(buckets, strategy, [64, 32])) for name, strategy in (
      ('replicated', jd.DataParallel()),
      # Every table (the linear part's [2^17, 1] too, 512 KiB), not the DNN kernels.
      ('sharded', jd.DataParallel(partitioner=jd.MinSizePartitioner(min_shard_bytes=512 << 10))))}


@check
def init():
  """Per-device bytes (outputs + temporaries) of the program creating the 2^17-bucket state,
  on one device and sharded over 8 (compiled, not run)."""
  out = {}
  for name, strategy in (('one', jd.SingleDevice()), ('sharded', jd.DataParallel(
      partitioner=jd.MinSizePartitioner(min_shard_bytes=512 << 10)))):
    est = estimator([1 << 17] * 26, strategy, [64, 32])
    source = est.input_pipeline.open(input_fn(), je.ModeKeys.TRAIN)
    first = source.first('test')
    source.close()
    program = est.compiled_model.state_program(first.features, first.labels)
    stats = program.lower(first.features, first.labels).compile().memory_analysis()
    out[name] = int(stats.output_size_in_bytes + stats.temp_size_in_bytes)
  return out


@check
def scale():
  buckets = [10**7] * 26
  # Every table (the linear part's [1e7, 1] too, 38 MiB), not the DNN kernels.
  strategy = jd.DataParallel(partitioner=jd.MinSizePartitioner(min_shard_bytes=1 << 20))
  return {'buckets': buckets, **plan_of(estimator(buckets, strategy, [512, 256, 128]))}


with open(OUT, 'w') as f:
  json.dump(RESULTS, f)
