"""The memory plan on one device: figures against an independent count, the check before any
state exists, and the strategies that cannot plan."""
from __future__ import annotations

import logging
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import distributed as jd
from jestimator.driver import memory_plan as mp

ROWS, DIM = 5000, 16


def model_fn(features, labels, mode):
  emb = nn.Embed(ROWS, DIM, name='table')(features['ids'])
  pred = nn.Dense(1, name='out')(emb)[:, 0]
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'y': pred})
  return je.EstimatorSpec(mode, loss=jnp.mean((pred - labels) ** 2), optimizer=optax.adam(0.1))


def input_fn():
  rng = np.random.default_rng(0)
  return iter([({'ids': rng.integers(0, ROWS, 32).astype(np.int32)},
                rng.normal(size=32).astype(np.float32))])


def test_plan_counts_the_state_and_names_the_largest_parameters(tmp_path):
  plan = je.Estimator(model_fn, str(tmp_path)).memory_plan(input_fn)
  table = ROWS * DIM * 4
  # Adam: the parameters and two moments of each, plus the out layer, step, count and rng.
  params = table + (DIM + 1) * 4
  assert plan.state_bytes == 3 * params + 4 + 4 + 8
  assert plan.batch_bytes >= 32 * 4 * 2
  assert plan.temp_bytes > 0 and plan.output_bytes >= plan.state_bytes
  assert [p.path for p in plan.largest][:1] == ['params/table/embedding']
  assert plan.largest[0].nbytes == plan.largest[0].bytes_per_device == table
  assert plan.largest[0].spec == 'replicated'
  assert plan.device_limit is None and plan.fits
  assert 'params/table/embedding [5000, 16] float32' in plan.summary()
  assert not os.listdir(tmp_path)  # nothing created, read or written


def test_train_fails_before_creating_the_state_when_the_plan_exceeds_the_device(tmp_path, caplog):
  config = je.RunConfig(device_memory_bytes=100 << 10)  # the table alone is 312 KiB
  est = je.Estimator(model_fn, str(tmp_path), config=config)
  with pytest.raises(ValueError, match=r'needs .* per device .* but the device has 100\.00 KiB '
                                       r'\(RunConfig.device_memory_bytes\); the largest '
                                       r'parameters are params/table/embedding') as e:
    est.train(input_fn, steps=1)
  assert 'MinSizePartitioner' in str(e.value)
  assert est.latest_checkpoint() is None
  # Enough memory: logs the plan at INFO, then trains.
  est = je.Estimator(model_fn, str(tmp_path), config=config.replace(device_memory_bytes=1 << 30))
  with caplog.at_level(logging.INFO, logger='jestimator'):
    est.train(input_fn, steps=1)
  assert est.get_variable_value('global_step') == 1
  logged = [r.getMessage() for r in caplog.records if 'Memory plan per device' in r.getMessage()]
  assert len(logged) == 1 and 'params/table/embedding [5000, 16]' in logged[0]
  assert '1.00 GiB (RunConfig.device_memory_bytes)' in logged[0]


def test_device_memory_bytes_is_validated():
  for bad in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match='device_memory_bytes'):
      je.RunConfig(device_memory_bytes=bad)


def test_pmap_cannot_plan(tmp_path):
  est = je.Estimator(model_fn, str(tmp_path), config=je.RunConfig(strategy=jd.Pmap()))
  with pytest.raises(ValueError, match='memory plan needs .* Pmap does not'):
    est.memory_plan(input_fn)


def test_human_units():
  assert (mp.human(512), mp.human(2048), mp.human(3 << 20), mp.human(5 << 30)) == (
      '512 B', '2.00 KiB', '3.00 MiB', '5.00 GiB')
