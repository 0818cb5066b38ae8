"""Tuning the census wide & deep model with Optuna: learning rates, hidden units, embedding size.

`python examples/tune_census.py [BASE_DIR]` runs 12 trials with a median pruner (a few minutes on
CPU), prints the best trial and writes `BASE_DIR/trials.png`: each trial's evaluation loss by
step (pruned trials stop early). `tensorboard --logdir BASE_DIR` shows the trials in the HParams
tab. Rerunning with the same BASE_DIR resumes the study (the SQLite file `BASE_DIR/study.db`).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile

import numpy as np
import optax
import optuna

import jestimator as je
from jestimator import columns as fc
from jestimator import tuning
from jestimator.datasets import adult


def _columns(train, embedding_dim: int):
  vocab = {k: fc.categorical_column_with_vocabulary_list(k, None)
           for k in ('gender', 'education', 'marital_status', 'relationship', 'workclass')}
  occupation = fc.categorical_column_with_hash_bucket('occupation', hash_bucket_size=100)
  age = fc.bucketized_column(fc.numeric_column('age'), boundaries=[25, 35, 45, 55, 65])
  wide = [*vocab.values(), occupation, age,
          fc.crossed_column(['education', 'occupation'], hash_bucket_size=1000)]
  deep = [*(fc.numeric_column(k, normalizer='zscore')
            for k in ('age', 'education_num', 'hours_per_week')),
          *(fc.indicator_column(vocab[k]) for k in ('education', 'relationship')),
          fc.embedding_column(occupation, dimension=embedding_dim)]
  return fc.analyze(wide, train), fc.analyze(deep, train)


def main(base_dir: str | None = None, n_trials: int = 12, max_steps: int = 300,
         every_n_steps: int = 50, train_rows: int | None = None, plot: bool = True) -> dict:
  """Runs (or resumes) the study; returns the best trial's summary and the counts by state."""
  base_dir = base_dir or tempfile.mkdtemp(prefix='tune_census_')
  train, test = adult.load()
  train_labels, test_labels = train.pop('income_bracket'), test.pop('income_bracket')
  if train_rows is not None:  # a short run (the tests): fewer rows, same model
    train = {k: v[:train_rows] for k, v in train.items()}
    train_labels = train_labels[:train_rows]
    test = {k: v[:train_rows] for k, v in test.items()}
    test_labels = test_labels[:train_rows]
  train_fn = je.inputs.numpy_input_fn(train, train_labels, batch_size=256, num_epochs=None,
                                      shuffle=True, seed=0)
  eval_fn = je.inputs.numpy_input_fn(test, test_labels, batch_size=2048, shuffle=False)

  def build(trial, model_dir):
    dnn_lr = trial.suggest_float('dnn_learning_rate', 1e-3, 3.0, log=True)
    linear_lr = trial.suggest_float('linear_learning_rate', 1e-3, 0.3, log=True)
    units = trial.suggest_categorical('hidden_units', ['32', '64-32', '100-50'])
    dim = trial.suggest_int('embedding_dim', 4, 16, step=4)
    wide, deep = _columns(train, dim)
    est = je.DNNLinearCombinedClassifier(
        model_dir=model_dir, linear_feature_columns=wide, dnn_feature_columns=deep,
        dnn_hidden_units=[int(u) for u in units.split('-')],
        dnn_optimizer=optax.adagrad(dnn_lr), linear_optimizer=je.optimizers.ftrl(linear_lr),
        label_vocabulary=list(adult.LABEL_VOCABULARY),
        config=je.RunConfig(seed=42, log_step_count_steps=10_000))
    return (est, je.TrainSpec(train_fn, max_steps=max_steps),
            je.EvalSpec(eval_fn, steps=None, every_n_steps=every_n_steps))

  study = tuning.tune(build, base_dir, metric='loss', direction='minimize', n_trials=n_trials,
                      sampler=optuna.samplers.TPESampler(seed=0),
                      pruner=optuna.pruners.MedianPruner(n_startup_trials=3,
                                                         n_warmup_steps=every_n_steps))
  states = [t.state.name for t in study.trials]
  best = study.best_trial
  print(f'best trial {best.number}: loss {best.value:.4f} with {best.params}')
  print('trials:', {s: states.count(s) for s in sorted(set(states))})
  if plot:
    _plot(study, os.path.join(base_dir, 'trials.png'))
  best_est = tuning.best_estimator(study, build, base_dir)
  return {'best_value': best.value, 'best_params': best.params, 'states': states,
          'best_model_dir': best_est.model_dir, 'plot': os.path.join(base_dir, 'trials.png'),
          'best_accuracy': best_est.evaluate(eval_fn)['accuracy']}


def _plot(study: optuna.Study, path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4))
  for t in study.trials:
    steps = sorted(t.intermediate_values)
    style = '--' if t.state.name == 'PRUNED' else '-'
    # Markers: a trial pruned at its first evaluation is a single point, which a line omits.
    ax.plot(steps, np.array([t.intermediate_values[s] for s in steps]), style, marker='o',
            markersize=3, label=f'{t.number} ({t.state.name.lower()})')
  ax.set(xlabel='global step', ylabel='evaluation loss', yscale='log',
         title='census wide & deep: evaluation loss per trial (dashed: pruned)')
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


if __name__ == '__main__':
  logging.basicConfig(level=logging.WARNING)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  main(sys.argv[1] if len(sys.argv) > 1 else None)
