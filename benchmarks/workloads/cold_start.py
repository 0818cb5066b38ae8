"""Cold start: a fresh process builds a canned Adult model and runs its first `train()`.

Three fresh processes per model, one after the other:
- `jestimator`: load the data, analyze the feature columns, build the canned estimator, one
  `train()` of 2 epochs (the short final batch included), with an empty persistent compilation
  cache (the Estimator's default one, in a temporary `XDG_CACHE_HOME`);
- `jestimator_cached`: the same again, finding the first process's compiled programs on disk;
- `baseline`: the same model written by hand the way people write it: numpy pre-processing, an
  eager `module.init`, `optimizer.init`, a `jax.jit` step run over the same 2 epochs (so the short
  final batch compiles the step a second time), no persistent cache.
Each reports the seconds from its first line to the end of training (`first_train_s`; imports,
data loading and building included), the whole process as the parent saw it (`process_s`), the
XLA compilations it ran (`compilations`; cache hits counted apart), and its peak RSS.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from benchmarks.workloads._measure import Budget

NAME = 'cold_start'
DESCRIPTION = 'fresh process: build a canned Adult model + first train() (2 epochs), vs by hand'

CONFIGS = {
    'tiny': {'models': ['linear'], 'batch_size': 64, 'epochs': 2, 'hidden_units': [16, 8],
             'train_rows': 2000},
    'quick': {'models': ['linear', 'dnn', 'wide_deep'], 'batch_size': 256, 'epochs': 2,
              'hidden_units': [100, 50], 'train_rows': None},
    'full': {'models': ['linear', 'dnn', 'wide_deep'], 'batch_size': 256, 'epochs': 2,
             'hidden_units': [100, 50], 'train_rows': None},
}

RUNNERS = ('jestimator', 'jestimator_cached', 'baseline')
#: Every cold run dict holds exactly these keys.
COLD_KEYS = ('process_s', 'first_train_s', 'compilations', 'cache_hits', 'train_steps',
             'peak_host_rss_mib', 'final_loss')
#: `jestimator / baseline` and `jestimator_cached / baseline` for these.
COLD_RATIO_KEYS = ('first_train_s', 'process_s', 'peak_host_rss_mib')

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(config: dict[str, Any], budget: Budget, progress: Callable[[str], None]) -> dict[str, Any]:
  """One cold case per model; `budget` does not apply (every figure is one fresh process)."""
  del budget
  cases = []
  for model in config['models']:
    with tempfile.TemporaryDirectory(prefix='jestimator-cold-') as tmp:
      runs = {}
      for runner in RUNNERS:
        progress(f'{model}: fresh {runner} process')
        runs[runner] = _fresh_process(runner, model, config, tmp)
      ratio = {}
      for runner in ('jestimator', 'jestimator_cached'):
        for k in COLD_RATIO_KEYS:
          a, b = runs[runner][k], runs['baseline'][k]
          ratio[f'{runner}/{k}'] = a / b if b else None
      cases.append({'case': f'{model}/batch={config["batch_size"]}',
                    'params': {'model': model, 'batch_size': config['batch_size'],
                               'epochs': config['epochs']}, **runs, 'ratio': ratio})
  return {'cold_cases': cases}


def _fresh_process(runner: str, model: str, config: dict[str, Any], tmp: str) -> dict[str, Any]:
  out = os.path.join(tmp, f'{runner}.json')
  env = {k: v for k, v in os.environ.items()
         if k not in ('JAX_COMPILATION_CACHE_DIR', 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')}
  # Both jestimator processes share one empty-at-first default cache location.
  env['XDG_CACHE_HOME'] = os.path.join(tmp, 'xdg')
  env['PYTHONPATH'] = os.pathsep.join([_REPO, env.get('PYTHONPATH', '')])
  args = [sys.executable, '-m', 'benchmarks.workloads.cold_start', runner, model,
          json.dumps(config), os.path.join(tmp, f'model_{runner}'), out]
  t0 = time.perf_counter()
  proc = subprocess.run(args, env=env, cwd=_REPO, capture_output=True, text=True, timeout=1800)
  wall = time.perf_counter() - t0
  if proc.returncode != 0:
    raise RuntimeError(f'{runner} {model} failed ({proc.returncode}):\n{proc.stderr[-4000:]}')
  with open(out) as f:
    result = json.load(f)
  result['process_s'] = wall
  return {k: result[k] for k in COLD_KEYS}


# -- the child processes ----------------------------------------------------------------------------
def _child(runner: str, model: str, config: dict[str, Any], model_dir: str, out: str,
           t0: float) -> None:
  import resource

  import jax

  counts = {'compilations': 0, 'cache_hits': 0}

  def on_duration(event, duration, **kwargs):
    if event == '/jax/core/compile/backend_compile_duration':
      counts['compilations'] += 1

  def on_event(event, **kwargs):
    if event == '/jax/compilation_cache/cache_hits':
      counts['cache_hits'] += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  if runner == 'baseline':
    steps, loss = _baseline_train(model, config)
    assert 'jestimator' not in sys.modules  # a hand-written process does not import it
  else:
    steps, loss = _estimator_train(model, config, model_dir)
  first_train_s = time.perf_counter() - t0
  rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
  with open(out, 'w') as f:
    json.dump({'first_train_s': first_train_s, 'train_steps': steps, 'final_loss': loss,
               'peak_host_rss_mib': rss_mib, **counts}, f)


def _standalone(relpath: str):
  """A module of the repository loaded from its file without importing its package: the
  hand-written process reads the bundled CSV and uses an FTRL port, not the jestimator package."""
  import importlib.util
  name = '_cold_' + os.path.basename(relpath)[:-3]
  spec = importlib.util.spec_from_file_location(name, os.path.join(_REPO, relpath))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _data(config, adult):
  train, test = adult.load()
  if config['train_rows']:
    train = {k: v[:config['train_rows']] for k, v in train.items()}
  return train, test


def _estimator_train(model: str, config: dict[str, Any], model_dir: str) -> tuple[int, float]:
  import numpy as np

  import jestimator as je
  from benchmarks.workloads import adult as workload
  from jestimator.datasets import adult
  train, _ = _data(config, adult)
  y = train.pop(adult.LABEL_COLUMN)
  wide, deep = workload.feature_columns(train)
  labels = list(adult.LABEL_VOCABULARY)
  run_config = je.RunConfig(model_dir=model_dir, log_step_count_steps=10**9,
                            save_summary_steps=10**9)
  if model == 'linear':
    est = je.LinearClassifier(feature_columns=wide, label_vocabulary=labels, config=run_config)
  elif model == 'dnn':
    est = je.DNNClassifier(hidden_units=list(config['hidden_units']), feature_columns=deep,
                           label_vocabulary=labels, config=run_config)
  else:
    est = je.DNNLinearCombinedClassifier(
        linear_feature_columns=wide, dnn_feature_columns=deep,
        dnn_hidden_units=list(config['hidden_units']), label_vocabulary=labels,
        config=run_config)

  class LastLoss(je.hooks.Hook):
    loss = float('nan')

    def before_step(self, ctx):
      return ('loss',)

    def after_step(self, ctx, values):
      self.loss = float(values['loss'])

  last = LastLoss()
  est.train(je.inputs.numpy_input_fn(train, y, batch_size=config['batch_size'],
                                     num_epochs=config['epochs'], shuffle=True), hooks=[last])
  return int(np.asarray(est.get_variable_value('global_step'))), last.loss


def _baseline_train(model: str, config: dict[str, Any]) -> tuple[int, float]:
  """The hand-written process: prep, eager flax init, optax init, jitted steps."""
  import jax
  import numpy as np
  import optax

  from benchmarks.workloads import _adult_model as workload
  adult = _standalone('jestimator/datasets/adult.py')
  ftrl = _standalone('jestimator/canned/optimizers.py').ftrl
  train, test = _data(config, adult)
  y = (train.pop(adult.LABEL_COLUMN) == adult.LABEL_VOCABULARY[1]).astype(np.float32)
  test.pop(adult.LABEL_COLUMN)
  x, _, sizes = workload.preprocess(train, test)
  module = workload.WideDeep(sizes, tuple(config['hidden_units']), wide=model != 'dnn',
                             deep=model != 'linear')
  b = config['batch_size']
  params = module.init(jax.random.PRNGKey(0), {k: v[:b] for k, v in x.items()})['params']
  optimizer = workload.optimizer(model, ftrl)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, batch, labels):
    def loss_fn(p):
      logits = module.apply({'params': p}, batch)
      return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(0)
  n = len(y)
  order = np.concatenate([rng.permutation(n) for _ in range(config['epochs'])])
  steps = 0
  for start in range(0, len(order), b):
    idx = order[start:start + b]
    params, opt_state, loss = step(params, opt_state, {k: v[idx] for k, v in x.items()}, y[idx])
    steps += 1
  return steps, float(loss)


if __name__ == '__main__':
  _t0 = time.perf_counter()
  _child(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5], _t0)
