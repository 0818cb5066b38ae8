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

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

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

NUMERIC = ('age', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week')
VOCAB = ('gender', 'education', 'marital_status', 'relationship', 'workclass', 'race')
HASHED = {'occupation': 1000, 'native_country': 1000}
INDICATOR = ('workclass', 'education', 'gender', 'relationship')
EMBEDDED = ('native_country', 'occupation')
AGE_BOUNDARIES = (18, 25, 30, 35, 40, 45, 50, 55, 60, 65)
CROSS_BUCKETS = 1000
EMBEDDING_DIM = 8


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


# -- the baseline's own pre-processing and model --------------------------------------------------
def preprocess(train: dict[str, np.ndarray], test: dict[str, np.ndarray]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
  """Raw columns -> `{'numeric': [n, 5] float32, '<column>': [n] int32 ids}` and id-space sizes.

  Vocabularies come from the train split (unknown values get one extra id), hashed columns use
  the factorised value modulo the bucket count, crosses the factorised id pair / triple modulo
  `CROSS_BUCKETS`: the same id spaces as the feature columns, not the same hash function.
  """
  out_tr, out_te, sizes = {}, {}, {}
  num_tr = np.stack([train[k].astype(np.float32) for k in NUMERIC], 1)
  num_te = np.stack([test[k].astype(np.float32) for k in NUMERIC], 1)
  mean, std = num_tr.mean(0), num_tr.std(0)
  out_tr['numeric'], out_te['numeric'] = (num_tr - mean) / std, (num_te - mean) / std
  for k in VOCAB:
    vocab = np.unique(train[k].astype(str))
    for raw, out in ((train, out_tr), (test, out_te)):
      v = raw[k].astype(str)
      ids = np.searchsorted(vocab, v)
      ids = np.where((ids < len(vocab)) & (vocab[np.minimum(ids, len(vocab) - 1)] == v), ids,
                     len(vocab))
      out[k] = ids.astype(np.int32)
    sizes[k] = len(vocab) + 1
  n_tr = len(num_tr)
  for k, buckets in HASHED.items():
    _, codes = np.unique(np.concatenate([train[k].astype(str), test[k].astype(str)]),
                         return_inverse=True)
    out_tr[k], out_te[k] = (codes[:n_tr] % buckets).astype(np.int32), (
        codes[n_tr:] % buckets).astype(np.int32)
    sizes[k] = buckets
  for raw, out in ((train, out_tr), (test, out_te)):
    out['age_buckets'] = np.digitize(raw['age'], AGE_BOUNDARIES).astype(np.int32)
  sizes['age_buckets'] = len(AGE_BOUNDARIES) + 1
  for name, keys in (('education_x_occupation', ('education', 'occupation')),
                     ('age_x_education_x_occupation', ('age_buckets', 'education', 'occupation'))):
    both = np.concatenate([np.stack([out_tr[k] for k in keys], 1),
                           np.stack([out_te[k] for k in keys], 1)])
    _, codes = np.unique(both, axis=0, return_inverse=True)
    codes = codes.reshape(-1) % CROSS_BUCKETS
    out_tr[name], out_te[name] = codes[:n_tr].astype(np.int32), codes[n_tr:].astype(np.int32)
    sizes[name] = CROSS_BUCKETS
  return out_tr, out_te, sizes


WIDE_IDS = (*VOCAB, *HASHED, 'age_buckets', 'education_x_occupation',
            'age_x_education_x_occupation')


class WideDeep(nn.Module):
  """Hand-written wide & deep logit: `sum_c w_c[id_c] + b` plus an MLP over the dense inputs."""
  sizes: dict
  hidden_units: tuple
  wide: bool = True
  deep: bool = True

  @nn.compact
  def __call__(self, f):
    logit = 0.0
    if self.deep:
      parts = [f['numeric']]
      parts += [nn.one_hot(f[k], self.sizes[k]) for k in INDICATOR]
      parts += [nn.Embed(self.sizes[k], EMBEDDING_DIM, name=f'embed_{k}')(f[k]) for k in EMBEDDED]
      x = jnp.concatenate(parts, -1)
      for i, units in enumerate(self.hidden_units):
        x = nn.relu(nn.Dense(units, kernel_init=nn.initializers.glorot_uniform(),
                             name=f'dnn_{i}')(x))
      logit = nn.Dense(1, kernel_init=nn.initializers.glorot_uniform(), name='dnn_logits')(x)[:, 0]
    if self.wide:
      w = [nn.Embed(self.sizes[k], 1, embedding_init=nn.initializers.zeros,
                    name=f'wide_{k}')(f[k])[:, 0] for k in WIDE_IDS]
      logit = logit + sum(w) + self.param('wide_bias', nn.initializers.zeros, ())
    return logit


def _optimizer(model: str) -> optax.GradientTransformation:
  """The canned defaults, written out: FTRL (lr min(cap, 1/sqrt(11))) and Adagrad(0.05)."""
  from jestimator.canned.optimizers import ftrl  # optax has no FTRL; TF's one, as in canned
  adagrad = optax.adagrad(0.05, initial_accumulator_value=0.1, eps=1e-7)
  n_wide = len(WIDE_IDS)
  if model == 'linear':
    return ftrl(min(0.2, n_wide ** -0.5))
  if model == 'dnn':
    return adagrad
  return optax.multi_transform(
      {'wide': ftrl(min(0.005, n_wide ** -0.5)), 'deep': adagrad},
      lambda params: {k: 'wide' if k.startswith('wide_') else 'deep' for k in params})


def make_tasks(models: Sequence[str], hidden_units: Sequence[int], train_rows: int | None,
               eval_rows: int | None) -> dict[str, Task]:
  """One `Task` per model name ('linear', 'dnn', 'wide_deep') on the Adult data."""
  from jestimator import canned
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
        optimizer=_optimizer(model), base_train_x=base_tr, base_train_y=base_y_tr,
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
