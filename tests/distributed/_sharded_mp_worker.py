"""One process of a 2-process x 4-CPU-device sharded DataParallel run (started by
test_sharded.py): `python _sharded_mp_worker.py MODEL_DIR OUT_JSON`.

Trains the canned wide & deep of `_sharded_models` 10 steps, then a new Estimator resumes from the
sharded checkpoint to 20; writes the variables, the evaluation and what this process holds of a
table. Cluster settings come from JESTIMATOR_COORDINATOR_ADDRESS / _NUM_PROCESSES / _PROCESS_ID.
"""
from __future__ import annotations

import json
import sys

import jax

jax.config.update('jax_num_cpu_devices', 4)  # before the backend starts

from jestimator import distributed as jd  # noqa: E402

assert jd.initialize(heartbeat_timeout_seconds=10)

import _sharded_models as m  # noqa: E402

MODEL_DIR, OUT = sys.argv[1:3]
assert jax.process_count() == 2 and jax.device_count() == 8


def strategy():
  return jd.DataParallel(partitioner=m.PARTITIONER)


m.wide_deep(MODEL_DIR, strategy()).train(m.train_input_fn(), max_steps=10)
est = m.wide_deep(MODEL_DIR, strategy())
est.train(m.train_input_fn(10), max_steps=20)
table = est.state_store.newest.params['dnn']['input_layer']['C0_embedding']['embedding_weights']
held = {s.index[0].start: s.data.shape[0] for s in table.addressable_shards}
results = {'vars': {k: est.get_variable_value(k).tolist() for k in est.get_variable_names()},
           'eval': est.evaluate(m.eval_input_fn())['loss'],
           'table_rows_held': sum(held.values()), 'fully_addressable': table.is_fully_addressable}
plan = est.memory_plan(m.train_input_fn())  # per-process batches: planned as the global one
results['plan'] = {'state_bytes': plan.state_bytes, 'batch_bytes': plan.batch_bytes}
with open(f'{OUT}.{jax.process_index()}', 'w') as f:
  json.dump(results, f)
