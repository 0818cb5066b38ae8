"""Runs every 8-fake-CPU-device check in one process (start-up and compiles are paid once).

Started by test_strategies.py as `python _multidevice_worker.py OUT.json` with
XLA_FLAGS=--xla_force_host_platform_device_count=8; writes raw results (losses, parameters,
metrics, batch statistics, error messages) as JSON. The assertions, and the numpy references,
live in the test module.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jestimator as je
from jestimator import distributed as jd
from jestimator.hooks import Hook

assert jax.device_count() == 8, jax.devices()
RESULTS: dict = {}
ROOT = tempfile.mkdtemp(prefix='jestimator_dist_')  # removed at the end

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 5)).astype(np.float32)
Y = (X @ rng.normal(size=5) + 0.1 * rng.normal(size=200)).astype(np.float32)
RESULTS['data'] = {'x': X.tolist(), 'y': Y.tolist()}


class LossRecorder(Hook):
  """Fetches the loss of every step (also inside `steps_per_loop` dispatches)."""

  def __init__(self):
    self.losses = []

  def before_step(self, ctx):
    return ['loss', 'losses']

  def after_step(self, ctx, values):
    self.losses.extend(np.atleast_1d(values.get('losses', values.get('loss'))).tolist())


def train_input(batch_size=32, shuffle=True):
  return je.inputs.numpy_input_fn({'x': X}, Y, batch_size=batch_size, num_epochs=None,
                                  shuffle=shuffle, seed=1)


def eval_input():
  # 100 rows in batches of 32: the last batch holds 4 rows, padded and spread over the devices.
  return je.inputs.numpy_input_fn({'x': X[:100]}, Y[:100], batch_size=32, shuffle=False)


def predict_input():
  return je.inputs.numpy_input_fn({'x': X[:20]}, batch_size=8, shuffle=False)


def variables(est) -> dict:
  return {k: est.get_variable_value(k).tolist() for k in est.get_variable_names()
          if k != 'global_step'}


def mlp_fn(features, labels, mode):
  h = nn.relu(nn.Dense(16)(features['x']))
  pred = nn.Dense(1)(h)[:, 0]
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'y': pred})
  mask = je.example_mask()
  err = (pred - labels) ** 2
  loss = jnp.sum(err * mask) / jnp.sum(mask) if mask is not None else jnp.mean(err)
  return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.05),
                          eval_metrics={'mae': je.metrics.mean_absolute_error(labels, pred)})


def plain_mean_fn(features, labels, mode):
  """mlp_fn with a loss that averages over the whole batch (not padding-aware)."""
  h = nn.relu(nn.Dense(16)(features['x']))
  pred = nn.Dense(1)(h)[:, 0]
  return je.EstimatorSpec(mode, predictions={'y': pred}, loss=jnp.mean((pred - labels) ** 2))


def strategies():
  return {'single': (None, 1), 'pmap': (jd.Pmap(), 1), 'pmap_loop': (jd.Pmap(), 5),
          'pmap4': (jd.Pmap(jax.devices()[4:]), 1), 'dp': (jd.DataParallel(), 1),
          'dp_loop': (jd.DataParallel(), 5)}


def check(name):
  def wrap(fn):
    start = time.perf_counter()
    try:
      fn()
    except Exception:  # reported to the test, which fails with the traceback
      RESULTS.setdefault('errors', {})[name] = traceback.format_exc()
    RESULTS.setdefault('seconds', {})[name] = round(time.perf_counter() - start, 2)
    return fn
  return wrap


EVALUATED = ('single', 'pmap', 'dp')  # the loop variants share the eval and predict code


@check('mlp')
def _mlp():
  out = RESULTS['mlp'] = {}
  for name, (strategy, steps_per_loop) in strategies().items():
    est = je.Estimator(mlp_fn, os.path.join(ROOT, f'mlp_{name}'), config=je.RunConfig(
        strategy=strategy, steps_per_loop=steps_per_loop, seed=3))
    hook, contexts = LossRecorder(), []

    def input_fn(input_context):
      contexts.append([input_context.num_input_pipelines, input_context.input_pipeline_id,
                       input_context.num_replicas_in_sync])
      return train_input()()

    est.train(input_fn, hooks=[hook], max_steps=20)
    out[name] = {'losses': hook.losses, 'vars': variables(est), 'input_context': contexts[0]}
    if name in EVALUATED:
      out[name]['eval'] = est.evaluate(eval_input())
      plain = je.Estimator(plain_mean_fn, os.path.join(ROOT, f'mlp_{name}'),
                           config=je.RunConfig(strategy=strategy))
      out[name]['eval_plain'] = plain.evaluate(eval_input(), name='plain')
      out[name]['pred'] = np.asarray([p['y'] for p in est.predict(predict_input())]).tolist()


def linear_fn(features, labels, mode):
  pred = nn.Dense(1, kernel_init=nn.initializers.zeros)(features['x'])[:, 0]
  loss = jnp.mean((pred - labels) ** 2)
  return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1))


@check('linear')
def _linear():
  out = RESULTS['linear'] = {}
  for name, strategy in (('pmap', jd.Pmap()), ('dp', jd.DataParallel())):
    est = je.Estimator(linear_fn, os.path.join(ROOT, f'linear_{name}'),
                       config=je.RunConfig(strategy=strategy))
    est.train(train_input(shuffle=False), max_steps=20)
    out[name] = variables(est)


def bn_fn(features, labels, mode):
  h = nn.BatchNorm(use_running_average=mode != je.ModeKeys.TRAIN, momentum=0.9)(features['x'])
  pred = nn.Dense(1)(h)[:, 0]
  mask = je.example_mask()
  err = (pred - labels) ** 2
  loss = jnp.sum(err * mask) / jnp.sum(mask) if mask is not None else jnp.mean(err)
  return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.05),
                          eval_metrics={'mae': je.metrics.mean_absolute_error(labels, pred)})


@check('batchnorm')
def _batchnorm():
  out = RESULTS['batchnorm'] = {}
  for name, strategy in (('single', None), ('pmap', jd.Pmap()), ('dp', jd.DataParallel())):
    model_dir = os.path.join(ROOT, f'bn_{name}')
    est = je.Estimator(bn_fn, model_dir, config=je.RunConfig(strategy=strategy, seed=3))
    est.train(train_input(shuffle=False), max_steps=1)
    first = {k: est.get_variable_value(f'batch_stats/BatchNorm_0/{k}').tolist()
             for k in ('mean', 'var')}
    hook = LossRecorder()
    est.train(train_input(shuffle=False), hooks=[hook], max_steps=20)
    out[name] = {'first': first, 'losses': hook.losses, 'vars': variables(est)}
  # The single-device checkpoint evaluated under every strategy.
  out['eval'] = {}
  for name, strategy in (('single', None), ('pmap', jd.Pmap()), ('dp', jd.DataParallel())):
    est = je.Estimator(bn_fn, os.path.join(ROOT, 'bn_single'),
                       config=je.RunConfig(strategy=strategy))
    out['eval'][name] = est.evaluate(eval_input(), name=f'under_{name}')


class Probe(nn.Module):
  """Stores its input's column means in the `probe` collection (averaged over replicas)."""

  @nn.compact
  def __call__(self, x):
    v = self.variable('probe', 'mask', lambda: jnp.zeros(x.shape[-1], jnp.float32))
    if not self.is_initializing():
      v.value = jnp.mean(x, axis=0)
    return x


def dropout_fn(features, labels, mode):
  train = mode == je.ModeKeys.TRAIN
  # The probe sees dropout applied to ones: with one row per device, a replica's value is 0 or 2
  # per column, and the cross-replica mean of identical masks would be too.
  Probe()(nn.Dropout(0.5, deterministic=not train)(jnp.ones((features['x'].shape[0], 64))))
  h = nn.Dropout(0.3, deterministic=not train)(nn.relu(nn.Dense(32)(features['x'])))
  pred = nn.Dense(1)(h)[:, 0]
  loss = jnp.mean((pred - labels) ** 2)
  return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.05))


@check('dropout')
def _dropout():
  out = RESULTS['dropout'] = {}
  same_rows = je.inputs.numpy_input_fn({'x': np.repeat(X[:1], 8, 0)}, np.repeat(Y[:1], 8),
                                       batch_size=8, num_epochs=None, shuffle=False)
  for name, strategy in (('single', None), ('pmap', jd.Pmap()), ('dp', jd.DataParallel())):
    est = je.Estimator(dropout_fn, os.path.join(ROOT, f'dropout_{name}'),
                       config=je.RunConfig(strategy=strategy, seed=5))
    est.train(same_rows, max_steps=1)
    probe = est.get_variable_value('probe/Probe_0/mask').tolist()
    hook = LossRecorder()
    est.train(train_input(batch_size=8), hooks=[hook], max_steps=41)  # same shapes: no recompile
    out[name] = {'probe': probe, 'losses': hook.losses}


@check('cross_restore')
def _cross_restore():
  # 10 steps under Pmap, 10 more under DataParallel in the same model_dir (the input position is
  # restored too), then evaluated under SingleDevice.
  model_dir = os.path.join(ROOT, 'cross')
  je.Estimator(mlp_fn, model_dir, config=je.RunConfig(strategy=jd.Pmap(), seed=3)).train(
      train_input(), max_steps=10)
  est = je.Estimator(mlp_fn, model_dir, config=je.RunConfig(strategy=jd.DataParallel(), seed=3))
  est.train(train_input(), max_steps=20)
  single = je.Estimator(mlp_fn, model_dir, config=je.RunConfig(seed=3))
  RESULTS['cross_restore'] = {'vars': variables(est), 'eval': single.evaluate(eval_input())}


@check('bad_batch')
def _bad_batch():
  out = RESULTS['bad_batch'] = {}
  for name, strategy in (('pmap', jd.Pmap()), ('dp', jd.DataParallel())):
    est = je.Estimator(mlp_fn, os.path.join(ROOT, f'bad_{name}'),
                       config=je.RunConfig(strategy=strategy))
    try:
      est.train(train_input(batch_size=30), max_steps=3)
      out[name] = {'error': None}
    except ValueError as e:
      out[name] = {'error': str(e), 'checkpoint': est.latest_checkpoint()}


@check('dnn')
def _dnn():
  from jestimator import columns
  from jestimator.canned import DNNClassifier
  out = RESULTS['dnn'] = {}
  labels = (Y > 0).astype(np.int32)
  cols = [columns.numeric_column('x', shape=(5,))]
  for name, strategy in (('single', None), ('pmap', jd.Pmap()), ('dp', jd.DataParallel())):
    est = DNNClassifier([16, 8], cols, model_dir=os.path.join(ROOT, f'dnn_{name}'),
                        optimizer=optax.sgd(0.1),
                        config=je.RunConfig(strategy=strategy, seed=3))
    hook = LossRecorder()
    est.train(je.inputs.numpy_input_fn({'x': X}, labels, batch_size=32, num_epochs=None,
                                       shuffle=True, seed=1), hooks=[hook], max_steps=20)
    ev = est.evaluate(je.inputs.numpy_input_fn({'x': X[:100]}, labels[:100], batch_size=32,
                                               shuffle=False))
    out[name] = {'losses': hook.losses, 'vars': variables(est),
                 'eval': {k: float(v) for k, v in ev.items() if np.ndim(v) == 0}}


@check('example')
def _example():
  import runpy
  path = os.path.join(os.path.dirname(__file__), '..', '..', 'examples', 'pmap_training.py')
  main = runpy.run_path(path, run_name='pmap_training')['main']
  out = main(steps=40, log_every=0)
  RESULTS['example'] = {'losses': out['losses'],
                        'metrics': {k: float(v) for k, v in out['metrics'].items()}}


@check('summaries')
def _summaries():
  """model_fn summaries and hook fetches under every strategy (read back from the event files)."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  class Fetch(Hook):  # a summary scalar and a LoggingTensorHook tensor, every step
    def __init__(self):
      self.means, self.x0 = [], []

    def before_step(self, ctx):
      return ['mean_x0', 'LoggingTensorHook_0/x0']

    def after_step(self, ctx, values):
      self.means.append(float(values['mean_x0']))
      self.x0.append(np.asarray(values['LoggingTensorHook_0/x0']).tolist())

  def summary_fn(features, labels, mode):
    x = features['x']
    pred = nn.Dense(1)(x)[:, 0]
    mask = je.example_mask()
    # Padding-aware (it asks for the mask), so its own scalars leave padded rows out too.
    real = jnp.ones(x.shape[0]) if mask is None else mask
    je.summary.scalar('mean_x0', jnp.sum(x[:, 0] * real) / jnp.sum(real))
    je.summary.histogram('x', x)
    hook = je.hooks.LoggingTensorHook({'x0': x[:, 0]}, every_n_iter=1000)
    err = (pred - labels) ** 2
    loss = jnp.sum(err * mask) / jnp.sum(mask) if mask is not None else jnp.mean(err)
    return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.05), training_hooks=[hook])

  out = RESULTS['summaries'] = {}
  for name, (strategy, steps_per_loop) in strategies().items():
    if name == 'pmap4':
      continue
    model_dir = os.path.join(ROOT, f'summaries_{name}')
    est = je.Estimator(summary_fn, model_dir, config=je.RunConfig(
        strategy=strategy, steps_per_loop=steps_per_loop, save_summary_steps=2))
    fetch = Fetch()
    est.train(train_input(shuffle=False), hooks=[fetch], max_steps=5)
    est.evaluate(eval_input())
    res = out[name] = {'fetched_means': fetch.means, 'fetched_x0': fetch.x0}
    for where, logdir in (('train', model_dir), ('eval', est.eval_dir())):
      acc = EventAccumulator(logdir, size_guidance={'scalars': 0, 'histograms': 0})
      acc.Reload()
      res[where] = {'mean_x0': [(e.step, e.value) for e in acc.Scalars('mean_x0')],
                    'x': [(e.step, e.histogram_value.num, e.histogram_value.min,
                           e.histogram_value.max) for e in acc.Histograms('x')]}


shutil.rmtree(ROOT, ignore_errors=True)
with open(sys.argv[1], 'w') as f:
  json.dump(RESULTS, f)
