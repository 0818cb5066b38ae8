"""One process of a 2-process x 2-CPU-device DataParallel run (started by test_multiprocess.py).

  python _multiprocess_worker.py MODE MODEL_DIR OUT_JSON      (MODE: train | die)

Cluster settings come from JESTIMATOR_COORDINATOR_ADDRESS / _NUM_PROCESSES / _PROCESS_ID.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import jax
import numpy as np

jax.config.update('jax_num_cpu_devices', 2)  # before the backend starts

from jestimator import distributed as jd  # noqa: E402

assert jd.initialize(heartbeat_timeout_seconds=int(os.environ.get('HEARTBEAT', '10')))

import jestimator as je  # noqa: E402
from jestimator.hooks import Hook  # noqa: E402

import _dist_models as m  # noqa: E402

MODE, MODEL_DIR, OUT = sys.argv[1:4]
PID = jax.process_index()
assert jax.process_count() == 2 and jax.local_device_count() == 2 and jax.device_count() == 4


def config():
  return je.RunConfig(strategy=jd.DataParallel(), seed=3)


def variables(est):
  return {k: est.get_variable_value(k).tolist() for k in est.get_variable_names()
          if k != 'global_step'}


class DieAt(Hook):
  """Process 1 SIGKILLs itself after `step` steps, leaving its peer inside a collective."""

  def __init__(self, step):
    self.step = step

  def after_step(self, ctx, values):
    if PID == 1 and ctx.step >= self.step:
      with open(OUT, 'w') as f:
        json.dump({'killed_at': time.time()}, f)
      os.kill(os.getpid(), signal.SIGKILL)


class StopOn(Hook):
  """Only process `pid` asks to stop, after `step` steps: every process must stop with it."""

  def __init__(self, pid, step):
    self.pid, self.step = pid, step

  def after_step(self, ctx, values):
    if PID == self.pid and ctx.step >= self.step:
      ctx.request_stop()


def uneven_input_fn(steps_by_process):
  """Process `i` yields `steps_by_process[i]` batches of 8 rows, then ends."""

  def input_fn(input_context):
    mine = steps_by_process[input_context.input_pipeline_id]
    for s in range(mine):
      rows = (np.arange(8) + 8 * s) % len(m.X)
      yield {'x': m.X[rows]}, m.Y[rows]

  return input_fn


results = {}
if MODE == 'uneven':
  # Process 0's input ends after 6 batches, process 1's after 9: both stop at step 6 with a
  # checkpoint, then a resumed call runs on together (a new pass over both inputs) to max_steps.
  est = je.Estimator(m.model_fn, MODEL_DIR, config=config().replace(save_checkpoints_steps=4))
  est.train(uneven_input_fn([6, 9]))
  results['first'] = {'step': int(est.get_variable_value('global_step')),
                      'vars': variables(est)}
  est.train(uneven_input_fn([9, 5]), max_steps=100)
  results['second'] = {'step': int(est.get_variable_value('global_step'))}
elif MODE == 'die':
  est = je.Estimator(m.model_fn, MODEL_DIR, config=config())
  est.train(m.train_input_fn(), hooks=[DieAt(5)], max_steps=100_000)
  results['finished'] = True  # never reached: the peer is dead
else:
  # 10 steps, then a new Estimator resumes from the checkpoint (multi-process restore) to 20.
  je.Estimator(m.model_fn, MODEL_DIR, config=config()).train(m.train_input_fn(), max_steps=10)
  est = je.Estimator(m.model_fn, MODEL_DIR, config=config())
  est.train(m.train_input_fn(), max_steps=20)
  results['custom'] = {
      'vars': variables(est), 'eval': est.evaluate(m.eval_input_fn()),
      'pred': [float(p['y']) for p in est.predict(m.predict_input_fn())]}
  dnn = m.dnn_classifier(os.path.join(MODEL_DIR, 'dnn'), config())
  dnn.train(m.train_input_fn(m.CLASS_LABELS), max_steps=20)
  results['dnn'] = {'vars': variables(dnn)}
  # train_and_evaluate: evaluations at the saves (3, 6) and at the stop process 1 alone asks
  # for (7); exports by process 0 only.
  from jestimator.export import LatestExporter
  tae = m.dnn_classifier(os.path.join(MODEL_DIR, 'tae'), config().replace(
      save_checkpoints_steps=3))
  metrics, exports = je.train_and_evaluate(
      tae, je.TrainSpec(m.train_input_fn(m.CLASS_LABELS), max_steps=100, hooks=[StopOn(1, 7)]),
      je.EvalSpec(m.eval_input_fn(m.CLASS_LABELS), steps=None, throttle_secs=0,
                  exporters=LatestExporter('latest')))
  results['tae'] = {'step': metrics['global_step'], 'loss': metrics['loss'], 'exports': exports}
with open(OUT + f'.{PID}', 'w') as f:
  json.dump(results, f)
