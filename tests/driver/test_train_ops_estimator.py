"""Train ops through the Estimator: resuming in a new process at an odd step replays the same
updates, `steps_per_loop`, EMA variables for evaluate / predict / export, a changed train op
against a checkpoint, and the sub-update losses in hooks, summaries and the progress line."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import train_ops
from jestimator.hooks import Hook

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'model'))
import _gan  # noqa: E402

WORKER = os.path.join(os.path.dirname(HERE), 'model', '_gan_worker.py')


def _flat_reference(steps: int) -> dict:
  est = je.Estimator(_gan.model_fn, config=je.RunConfig(seed=1))
  init = est.compiled_model.create_train_state(next(_gan.input_fn()), None).params
  ref = _gan.hand_written(jax.device_get(init), steps)
  return {f'params/{g}/{layer}/{w}': np.asarray(v) for g, layers in ref.items()
          for layer, ws in layers.items() for w, v in ws.items()}


def _max_diff(got: dict, want: dict) -> float:
  assert sorted(got) == sorted(want)
  return max(float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in got)


def test_gan_resumes_in_a_new_process_at_an_odd_step_as_one_run(tmp_path):
  model_dir = str(tmp_path / 'gan')
  args = {'runs': [{'strategy': 'single', 'max_steps': 23, 'model_dir': model_dir}],
          'out': str(tmp_path / 'out.json')}
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')])}
  subprocess.run([sys.executable, WORKER, json.dumps(args)], check=True, env=env, timeout=300,
                 capture_output=True)
  est = je.Estimator(_gan.model_fn, model_dir, config=je.RunConfig(seed=1))
  assert est.latest_checkpoint().endswith('23')
  # The input restarts from its first batch in the new run, so feed it from batch 23 on.
  batches = _gan.input_fn()
  for _ in range(23):
    next(batches)
  est.train(lambda: batches, max_steps=50)
  got = {k: v for k, v in _gan.variables(est).items()}
  assert _max_diff(got, _flat_reference(50)) <= 1e-6
  # Both optimizer states came back and kept counting (the generator's at even steps only).
  opt_state = est.state_store.newest.opt_state
  assert int(opt_state['discriminator'][0].count) == 50
  assert int(opt_state['generator'][0].count) == 25


def test_steps_per_loop_gives_the_same_parameters(tmp_path):
  want = _flat_reference(20)
  for k in (1, 8):
    est = je.Estimator(_gan.model_fn, str(tmp_path / f'k{k}'),
                       config=je.RunConfig(seed=1, steps_per_loop=k))
    est.train(_gan.input_fn, max_steps=20)  # 8 + 8 + 4: a short final loop too
    assert _max_diff(_gan.variables(est), want) <= 1e-6, k


def test_changed_train_op_names_the_sub_update(tmp_path):
  model_dir = str(tmp_path / 'gan')
  je.Estimator(_gan.model_fn, model_dir, config=je.RunConfig(seed=1)).train(_gan.input_fn,
                                                                            max_steps=2)

  def other(features, mode):
    spec = _gan.model_fn(features, mode, None)
    rule = train_ops.alternate([
        train_ops.Update(optax.adam(1e-3), loss='discriminator', wrt='^params/discriminator/'),
        train_ops.Update(optax.sgd(1e-3, momentum=0.9), loss='generator',
                         wrt='^params/generator/')])
    return spec._replace(train_op=rule)

  est = je.Estimator(other, model_dir, config=je.RunConfig(seed=1))
  with pytest.raises(ValueError, match="sub-update 'generator' differs"):
    est.train(_gan.input_fn, max_steps=4)


class _Record(Hook):
  def __init__(self):
    self.seen = []

  def before_step(self, ctx):
    return ['update_losses']

  def after_step(self, ctx, values):
    self.seen.append(values['update_losses'])


def test_hooks_summaries_and_progress_see_the_sub_update_losses(tmp_path, caplog):
  est = je.Estimator(_gan.model_fn, str(tmp_path),
                     config=je.RunConfig(seed=1, save_summary_steps=2, log_step_count_steps=2))
  record = _Record()
  with caplog.at_level(logging.INFO, logger='jestimator'):
    est.train(_gan.input_fn, max_steps=4, hooks=[record])
  assert [sorted(v) for v in record.seen] == [['discriminator', 'generator']] * 4
  # Both at every step, the generator's too where it did not update (odd steps).
  assert all(np.isfinite(v[k]) for v in record.seen for k in v)
  assert any('discriminator loss = ' in r.getMessage() and 'generator loss = ' in r.getMessage()
             for r in caplog.records), caplog.text
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(tmp_path))
  events.Reload()
  tags = events.Tags()['scalars']
  assert {'loss', 'loss/discriminator', 'loss/generator'} <= set(tags), tags


def _linear_ema_fn(decay=0.8):
  def model_fn(features, labels, mode):
    pred = nn.Dense(1)(features['x'])[:, 0]
    if mode == je.ModeKeys.PREDICT:
      return je.EstimatorSpec(mode, predictions={'y': pred})
    loss = jnp.mean((pred - labels) ** 2)
    return je.EstimatorSpec(mode, loss=loss,
                            train_op=train_ops.then(optax.sgd(0.1), train_ops.ema(decay)),
                            eval_metrics={'mae': je.metrics.mean_absolute_error(labels, pred)})
  return model_fn


def test_eval_variables_ema_equals_a_checkpoint_holding_them_as_params(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -1.0, 2.0])).astype(np.float32)
  train = je.inputs.numpy_input_fn({'x': x}, y, batch_size=16, num_epochs=None, shuffle=False)
  ev = je.inputs.numpy_input_fn({'x': x}, y, batch_size=64, num_epochs=1, shuffle=False)
  pred = je.inputs.numpy_input_fn({'x': x[:4]}, shuffle=False)
  model_dir = str(tmp_path / 'ema')
  est = je.Estimator(_linear_ema_fn(), model_dir)
  est.train(train, max_steps=9)
  ema = train_ops.extras(est.state_store.newest.opt_state)['ema']
  # A second model whose checkpoint holds the EMA weights as its parameters.
  def holding(features, labels, mode):
    dense = nn.Dense(1, kernel_init=lambda *_: jnp.asarray(ema['Dense_0']['kernel']),
                     bias_init=lambda *_: jnp.asarray(ema['Dense_0']['bias']))
    p = dense(features['x'])[:, 0]
    if mode == je.ModeKeys.PREDICT:
      return je.EstimatorSpec(mode, predictions={'y': p})
    return je.EstimatorSpec(mode, loss=jnp.mean((p - labels) ** 2), optimizer=optax.sgd(0.0),
                            eval_metrics={'mae': je.metrics.mean_absolute_error(labels, p)})
  ref = je.Estimator(holding, str(tmp_path / 'ref'))
  ref.train(train, max_steps=1)
  want = ref.evaluate(ev)
  plain = est.evaluate(ev)
  live = je.Estimator(_linear_ema_fn(), model_dir, eval_variables='ema')
  got = live.evaluate(ev)  # read from the checkpoint in a new Estimator
  assert got['loss'] == want['loss'] and got['mae'] == want['mae'] and plain['loss'] != got['loss']
  assert [p['y'] for p in live.predict(pred)] == [p['y'] for p in ref.predict(pred)]
  # The held state of a training Estimator gives the same (no reload).
  live.train(train, max_steps=9)
  assert live.evaluate(ev)['loss'] == want['loss']
  with pytest.raises(ValueError, match="eval_variables='swa'.*keeps \\['ema'\\]"):
    je.Estimator(_linear_ema_fn(), model_dir, eval_variables='swa').evaluate(ev)


def test_export_with_ema_variables_serves_them(tmp_path):
  from jestimator import export
  rng = np.random.default_rng(0)
  x = rng.normal(size=(32, 3)).astype(np.float32)
  y = x.sum(1).astype(np.float32)
  model_dir = str(tmp_path / 'm')
  je.Estimator(_linear_ema_fn(0.5), model_dir).train(
      je.inputs.numpy_input_fn({'x': x}, y, batch_size=8, num_epochs=None, shuffle=False),
      max_steps=5)
  est = je.Estimator(_linear_ema_fn(0.5), model_dir, eval_variables='ema')
  path = est.export_saved_model(str(tmp_path / 'export'),
                                export.build_raw_serving_input_fn({'x': ('float32', [3])}))
  got = np.asarray(export.load(path).predict({'x': x[:4]})['y'])
  want = [p['y'] for p in est.predict(je.inputs.numpy_input_fn({'x': x[:4]}, shuffle=False))]
  np.testing.assert_allclose(got, want, atol=1e-6)
