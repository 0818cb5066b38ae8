"""Tuning benchmarks (issue 23): pruning's saving, and population mode against one trial.

  python -m benchmarks.tuning pruning    [--repeats 3] [--max-steps 5000] [--out FILE.json]
  python -m benchmarks.tuning population [--repeats 3] [--members 16] [--out FILE.json]

(default outputs: benchmarks/results/tuning_pruning_cpu.json, tuning_population_cpu.json)

Both use the canned Adult DNN (`DNNClassifier([100, 50])` over the `adult` workload's deep feature
columns, Adagrad as the canned default but through `optax.inject_hyperparams`), batch 256.

`pruning`: a `tuning.tune` study of 12 enqueued trials, half of them hopeless (learning rate 200
to 1000: the loss stalls far above the others'), trained `max_steps` steps with an evaluation
every `max_steps / 10`; once with `MedianPruner(n_startup_trials=2)` and once with `NopPruner`,
alternating, each in a fresh process with an empty persistent compilation cache of its own
(the Estimator's default cache, in a fresh `XDG_CACHE_HOME`: the first trial compiles, the
others read it; both studies pay the same). Targets: at least a third of the trials pruned, and
the pruned study's wall time <= 60% of the unpruned one's (the ratio of medians is reported; the
machine may be shared, so the two run side by side).

`population`: 16 learning rates (log-spaced 1e-3 ... 1) trained 2 epochs (255 steps, the short
final batch included) then evaluated on the test split: one `Population` of 16 against one solo
trial (`Estimator.train` + `evaluate` of the first rate), alternating, each in a fresh process
with the persistent compilation cache off, timed from building the estimator(s) to the final
results (compilation included; imports, data and column analysis excluded). Then every member is
trained alone in one more process, and its final evaluation loss compared with the population's.
Targets: population <= 3x one trial; every member within 1e-4 of training it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HIDDEN = [100, 50]
BATCH = 256
GOOD_LRS = [0.05, 0.1, 0.03, 0.2, 0.07, 0.15]
HOPELESS_LRS = [200.0, 500.0, 1000.0, 300.0, 700.0, 400.0]


def _data(eval_rows: int | None = None):
  from benchmarks.workloads import adult as workload
  from jestimator.datasets import adult
  train, test = adult.load()
  if eval_rows:
    test = {k: v[:eval_rows] for k, v in test.items()}
  y_tr, y_te = train.pop(adult.LABEL_COLUMN), test.pop(adult.LABEL_COLUMN)
  _, deep = workload.feature_columns(train)
  return train, y_tr, test, y_te, deep


def _builder(deep, cache: bool):
  import optax

  import jestimator as je
  from jestimator.datasets import adult

  def build(hp, model_dir):
    # The canned DNN's default Adagrad (initial accumulator 0.1, epsilon 1e-7), rate injected.
    opt = optax.inject_hyperparams(optax.adagrad)(learning_rate=hp['learning_rate'],
                                                  initial_accumulator_value=0.1, eps=1e-7)
    config = je.RunConfig(seed=hp.get('seed', 0), log_step_count_steps=10**9,
                          save_summary_steps=10**9, compilation_cache=cache)
    return je.DNNClassifier(hidden_units=HIDDEN, feature_columns=deep, model_dir=model_dir,
                            optimizer=opt, label_vocabulary=list(adult.LABEL_VOCABULARY),
                            config=config)

  return build


# -- children (fresh processes) ------------------------------------------------------------------
def _child_population(args) -> dict[str, Any]:
  import jestimator as je
  from jestimator import tuning
  train, y_tr, test, y_te, deep = _data()
  lrs = json.loads(args.lrs)
  train_fn = je.inputs.numpy_input_fn(train, y_tr, batch_size=BATCH, num_epochs=2, shuffle=True,
                                      seed=0)
  eval_fn = je.inputs.numpy_input_fn(test, y_te, batch_size=2048, shuffle=False)
  build = _builder(deep, cache=False)
  tmp = tempfile.mkdtemp(prefix='bench_tune_')
  t0 = time.perf_counter()
  if args.mode == 'population':
    pop = tuning.Population(build, [{'learning_rate': lr} for lr in lrs], base_dir=tmp)
    results = pop.train(train_fn, eval_input_fn=eval_fn, save=False, summaries=False)
    losses = [r.final['loss'] for r in results]
    steps = [r.global_step for r in results]
  else:  # solo: each rate trained alone, one after the other, as separate trials
    losses, steps = [], []
    for i, lr in enumerate(lrs):
      est = build({'learning_rate': lr}, os.path.join(tmp, f'solo_{i}'))
      est.train(train_fn)
      r = est.evaluate(eval_fn)
      losses.append(r['loss'])
      steps.append(r['global_step'])
  return {'wall_s': time.perf_counter() - t0, 'losses': losses, 'steps': steps}


def _child_study(args) -> dict[str, Any]:
  import optuna

  import jestimator as je
  from jestimator import tuning
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  train, y_tr, test, y_te, deep = _data(eval_rows=4096)
  train_fn = je.inputs.numpy_input_fn(train, y_tr, batch_size=BATCH, num_epochs=None,
                                      shuffle=True, seed=0)
  eval_fn = je.inputs.numpy_input_fn(test, y_te, batch_size=4096, shuffle=False)
  build_est = _builder(deep, cache=True)
  max_steps = args.max_steps

  def build(trial, model_dir):
    lr = trial.suggest_float('learning_rate', 1e-3, 1e3, log=True)
    return (build_est({'learning_rate': lr}, model_dir),
            je.TrainSpec(train_fn, max_steps=max_steps),
            je.EvalSpec(eval_fn, steps=None, every_n_steps=max_steps // 10))

  base = tempfile.mkdtemp(prefix='bench_study_')
  study = optuna.create_study(storage=tuning.default_storage(base), study_name='jestimator')
  for lr in _order_trials():  # two good ones first: the median pruner's start-up trials
    study.enqueue_trial({'learning_rate': lr})
  pruner = (optuna.pruners.MedianPruner(n_startup_trials=2) if args.mode == 'pruned'
            else optuna.pruners.NopPruner())
  t0 = time.perf_counter()
  study = tuning.tune(build, base, 'loss', 'minimize', n_trials=12, pruner=pruner)
  wall = time.perf_counter() - t0
  return {'wall_s': wall, 'states': [t.state.name for t in study.trials],
          'params': [t.params['learning_rate'] for t in study.trials],
          'values': [t.value for t in study.trials],
          'steps': [max(t.intermediate_values, default=0) for t in study.trials],
          'best_value': study.best_value}


def _spawn(argv: list[str], env_extra: dict[str, str] | None = None) -> dict[str, Any]:
  out = tempfile.mktemp(suffix='.json')
  env = dict(os.environ, **(env_extra or {}))
  subprocess.run([sys.executable, '-m', 'benchmarks.tuning', *argv, '--child-out', out],
                 check=True, env=env)
  with open(out) as f:
    return json.load(f)


def _order_trials():
  # Interleaved after two good start-up trials: G G H G H G H G H H G H.
  order = GOOD_LRS[:2]
  goods, bads = GOOD_LRS[2:], list(HOPELESS_LRS)
  while goods or bads:
    if bads:
      order.append(bads.pop(0))
    if goods:
      order.append(goods.pop(0))
  return order


# -- parents --------------------------------------------------------------------------------------
def run_pruning(repeats: int, max_steps: int) -> dict[str, Any]:
  runs = {'pruned': [], 'unpruned': []}
  for r in range(repeats):
    for mode in (('pruned', 'unpruned') if r % 2 == 0 else ('unpruned', 'pruned')):
      # An empty cache of the Estimator's default kind (its folder under XDG_CACHE_HOME, with
      # jestimator's 0.1 s threshold): the first trial compiles, the others read it.
      cache = tempfile.mkdtemp(prefix='bench_cache_')
      res = _spawn(['_study', '--mode', mode, '--max-steps', str(max_steps)],
                   {'XDG_CACHE_HOME': cache})
      print(f'{mode}: {res["wall_s"]:.1f} s, states {res["states"]}', flush=True)
      runs[mode].append(res)
  med = {m: statistics.median(x['wall_s'] for x in v) for m, v in runs.items()}
  pruned_frac = [x['states'].count('PRUNED') / len(x['states']) for x in runs['pruned']]
  return {'runs': runs, 'median_wall_s': med,
          'ratio_pruned_over_unpruned': med['pruned'] / med['unpruned'],
          'pairwise_ratios': [p['wall_s'] / u['wall_s']
                              for p, u in zip(runs['pruned'], runs['unpruned'])],
          'pruned_fraction': pruned_frac,
          'targets': {'pruned_fraction>=1/3': min(pruned_frac) >= 1 / 3,
                      'wall_ratio<=0.6': med['pruned'] / med['unpruned'] <= 0.6}}


def run_population(repeats: int, members: int) -> dict[str, Any]:
  import numpy as np
  lrs = [float(x) for x in np.geomspace(1e-3, 1.0, members)]
  runs = {'population': [], 'one_trial': []}
  for r in range(repeats):
    for mode in (('population', 'one_trial') if r % 2 == 0 else ('one_trial', 'population')):
      which = lrs if mode == 'population' else lrs[:1]
      res = _spawn(['_population', '--mode', 'population' if mode == 'population' else 'solo',
                    '--lrs', json.dumps(which)])
      print(f'{mode}: {res["wall_s"]:.2f} s', flush=True)
      runs[mode].append(res)
  alone = _spawn(['_population', '--mode', 'solo', '--lrs', json.dumps(lrs)])
  print(f'16 trials alone, one after the other: {alone["wall_s"]:.1f} s', flush=True)
  pop_losses = runs['population'][0]['losses']
  diffs = [abs(a - b) for a, b in zip(pop_losses, alone['losses'])]
  med = {m: statistics.median(x['wall_s'] for x in v) for m, v in runs.items()}
  return {'learning_rates': lrs, 'runs': runs, 'median_wall_s': med,
          'ratio_population_over_one_trial': med['population'] / med['one_trial'],
          'sequential_trials_wall_s': alone['wall_s'],
          'ratio_sequential_over_one_trial': alone['wall_s'] / med['one_trial'],
          'member_loss_population': pop_losses, 'member_loss_alone': alone['losses'],
          'max_abs_loss_diff': max(diffs), 'steps': alone['steps'],
          'targets': {'ratio<=3': med['population'] / med['one_trial'] <= 3,
                      'max_abs_loss_diff<=1e-4': max(diffs) <= 1e-4}}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('what', choices=('pruning', 'population', '_study', '_population'))
  parser.add_argument('--repeats', type=int, default=None)
  parser.add_argument('--out', default=None)
  parser.add_argument('--max-steps', type=int, default=5000)
  parser.add_argument('--members', type=int, default=16)
  parser.add_argument('--mode', default=None)
  parser.add_argument('--lrs', default=None)
  parser.add_argument('--child-out', default=None)
  args = parser.parse_args(argv)
  if args.what.startswith('_'):
    import logging  # the hopeless trials' AUC-coarseness warnings are expected here
    logging.getLogger('jestimator').setLevel(logging.ERROR)
    res = _child_study(args) if args.what == '_study' else _child_population(args)
    with open(args.child_out, 'w') as f:
      json.dump(res, f)
    return 0
  from benchmarks._machine import machine_info, write_results
  t0 = time.time()
  if args.what == 'pruning':
    res = run_pruning(args.repeats or 3, args.max_steps)
    config = {'trials': 12, 'order': _order_trials(), 'max_steps': args.max_steps,
              'every_n_steps': args.max_steps // 10, 'pruner': 'MedianPruner(n_startup_trials=2)',
              'model': f'DNNClassifier({HIDDEN}) on Adult, batch {BATCH}, eval on 4096 test rows'}
  else:
    res = run_population(args.repeats or 3, args.members)
    config = {'members': args.members, 'epochs': 2, 'batch_size': BATCH,
              'model': f'DNNClassifier({HIDDEN}) on Adult, Adagrad via inject_hyperparams'}
  doc = {'benchmark': f'tuning_{args.what}', 'machine': machine_info(), 'config': config,
         'command': 'python -m benchmarks.tuning ' + ' '.join(argv or sys.argv[1:]),
         'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
         'load_average_at_start': os.getloadavg(), 'wall_s': time.time() - t0, **res}
  print(json.dumps({k: v for k, v in doc.items() if k not in ('runs', 'machine')}, indent=1))
  write_results(doc, args.out or f'benchmarks/results/tuning_{args.what}_cpu.json')
  return 0


if __name__ == '__main__':
  sys.exit(main())
