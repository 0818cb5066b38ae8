"""UCI Adult census: canned Linear, DNN and wide & deep classifiers from raw string columns.

The Estimator side is the classic census tutorial (as `examples/census_wide_and_deep.py`): raw
string and integer columns through feature columns (vocabularies and z-scores learned by
`columns.analyze`, hashed occupation / country, bucketized age, two crosses), canned defaults for
optimizers (FTRL for the linear part, Adagrad 0.05 for the DNN). The baseline pre-processes the
same raw columns once with numpy into integer ids and z-scored floats, and trains a hand-written
Flax model of the same shape (per-column `nn.Embed` weights for the linear part, one-hot and
8-dimensional embeddings + numerics into the same hidden layers) with the same optimizers.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from benchmarks.workloads._adult_model import (AGE_BOUNDARIES, CROSS_BUCKETS, EMBEDDED,
                                               EMBEDDING_DIM, HASHED, INDICATOR, NUMERIC, VOCAB,
                                               WideDeep, optimizer, preprocess)
from benchmarks.workloads._measure import Budget
from benchmarks.workloads._task import Task, run_case

NAME = 'adult'
DESCRIPTION = 'UCI Adult: canned Linear, DNN, wide & deep through feature columns from raw data'

CONFIGS = {
    # tiny: wide & deep alone exercises both the linear and the DNN parts
    'tiny': {'models': ['wide_deep'], 'batch_sizes': [64],
             'hidden_units': [16, 8], 'train_rows': 2000, 'eval_rows': 500},
    'quick': {'models': ['linear', 'dnn', 'wide_deep'], 'batch_sizes': [256],
              'hidden_units': [100, 50], 'train_rows': None, 'eval_rows': None},
    'full': {'models': ['linear', 'dnn', 'wide_deep'], 'batch_sizes': [256, 2048],
             'hidden_units': [100, 50], 'train_rows': None, 'eval_rows': None},
}

def feature_columns(train: dict[str, np.ndarray]) -> tuple[list, list]:
  """`(wide, deep)` columns of the census tutorial, analyzed on `train`."""
  from jestimator import columns as fc
  numeric = [fc.numeric_column(k, normalizer='zscore') for k in NUMERIC]
  vocab = {k: fc.categorical_column_with_vocabulary_list(k, None) for k in VOCAB}
  hashed = {k: fc.categorical_column_with_hash_bucket(k, hash_bucket_size=n)
            for k, n in HASHED.items()}
  age_buckets = fc.bucketized_column(fc.numeric_column('age'), boundaries=list(AGE_BOUNDARIES))
  wide = [*vocab.values(), *hashed.values(), age_buckets,
          fc.crossed_column(['education', 'occupation'], hash_bucket_size=CROSS_BUCKETS),
          fc.crossed_column([age_buckets, 'education', 'occupation'],
                            hash_bucket_size=CROSS_BUCKETS)]
  deep = [*numeric, *(fc.indicator_column(vocab[k]) for k in INDICATOR),
          *(fc.embedding_column(hashed[k], dimension=EMBEDDING_DIM) for k in EMBEDDED)]
  analyzed = fc.analyze(wide + deep, train)  # one pass; same order as given
  return list(analyzed[:len(wide)]), list(analyzed[len(wide):])


def make_tasks(models: Sequence[str], hidden_units: Sequence[int], train_rows: int | None,
               eval_rows: int | None) -> dict[str, Task]:
  """One `Task` per model name ('linear', 'dnn', 'wide_deep') on the Adult data."""
  from jestimator import canned
  from jestimator.canned.optimizers import ftrl
  from jestimator.datasets import adult
  train, test = adult.load()
  if train_rows:
    train = {k: v[:train_rows] for k, v in train.items()}
  if eval_rows:
    test = {k: v[:eval_rows] for k, v in test.items()}
  y_tr, y_te = train.pop(adult.LABEL_COLUMN), test.pop(adult.LABEL_COLUMN)
  # The test split's labels end in '.' in the original files; the bundled copy is normalised.
  base_y_tr = (y_tr == adult.LABEL_VOCABULARY[1]).astype(np.float32)
  base_y_te = (y_te == adult.LABEL_VOCABULARY[1]).astype(np.float32)
  wide, deep = feature_columns(train)
  base_tr, base_te, sizes = preprocess(train, test)
  labels = list(adult.LABEL_VOCABULARY)
  hidden = tuple(hidden_units)

  def make(model: str) -> Callable:
    def make_estimator(config):
      if model == 'linear':
        return canned.LinearClassifier(feature_columns=wide, label_vocabulary=labels,
                                       config=config)
      if model == 'dnn':
        return canned.DNNClassifier(hidden_units=list(hidden), feature_columns=deep,
                                    label_vocabulary=labels, config=config)
      return canned.DNNLinearCombinedClassifier(
          linear_feature_columns=wide, dnn_feature_columns=deep, dnn_hidden_units=list(hidden),
          label_vocabulary=labels, config=config)
    return make_estimator

  tasks = {}
  for model in models:
    if model not in ('linear', 'dnn', 'wide_deep'):
      raise ValueError(f"adult models must be 'linear', 'dnn' or 'wide_deep', got {model!r}")
    tasks[model] = Task(
        make_estimator=make(model), train_x=train, train_y=y_tr, eval_x=test, eval_y=y_te,
        module=WideDeep(sizes, hidden, wide=model != 'dnn', deep=model != 'linear'),
        optimizer=optimizer(model, ftrl), base_train_x=base_tr, base_train_y=base_y_tr,
        base_eval_x=base_te, base_eval_y=base_y_te,
        metric_keys={'loss': 'average_loss', 'accuracy': 'accuracy', 'auc': 'auc'})
  return tasks


def run(config: dict[str, Any], budget: Budget, progress: Callable[[str], None]) -> dict[str, Any]:
  """One case per (model, batch size)."""
  progress('loading data, analyzing columns')
  tasks = make_tasks(config['models'], config['hidden_units'], config['train_rows'],
                     config['eval_rows'])
  cases = []
  for model, task in tasks.items():
    for b in config['batch_sizes']:
      cases.append(run_case(task, f'{model}/batch={b}', {'model': model, 'batch_size': b}, b,
                            budget, progress=progress))
  return {'cases': cases}
