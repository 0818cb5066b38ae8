"""Synthetic click-through data shaped like Criteo: wide & deep with large hashed embedding tables.

13 numeric features `I1..I13` (float32, already log-scaled as Criteo pipelines do) and 26
categorical features `C1..C26` (int64 raw values) whose cardinalities follow Criteo's (3 to 10M),
each hashed into `min(cardinality, max_buckets)` buckets (up to 1e6 in `full`). Values are drawn
log-uniformly (a few very frequent values, a long tail); the label is Bernoulli with a logit that
sums per-feature random effects, so a model can learn it (AUC well above 0.5).

Estimator: `DNNLinearCombinedClassifier` with the 26 hashed columns in the linear part and the 13
numerics + 26 `embedding_column`s (dimension 16) in the DNN, canned default optimizers. Baseline:
numpy hashing into the same bucket counts, per-column `nn.Embed` tables, same layers and optimizers.
Embedding gradients are dense in JAX (the whole table is updated every step), which is what makes
this workload memory-bandwidth bound.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.workloads._measure import Budget
from benchmarks.workloads._task import Task, run_case

NAME = 'ctr'
DESCRIPTION = 'synthetic Criteo-shaped CTR: wide & deep, 13 numeric + 26 hashed categorical columns'

# Criteo Kaggle (display advertising challenge) cardinalities of C1..C26.
CRITEO_CARDINALITIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683,
                        8351593, 3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15,
                        286181, 105, 142572)
N_NUMERIC, N_CATEGORICAL = 13, 26

CONFIGS = {
    # tiny keeps a few columns only: compile time grows with the number of tables
    'tiny': {'train_rows': 2048, 'eval_rows': 512, 'max_buckets': 1000, 'embedding_dim': 4,
             'hidden_units': [16, 8], 'batch_sizes': [128], 'numeric_columns': 2,
             'categorical_columns': 4, 'min_shard_bytes': 4096},
    'quick': {'train_rows': 100_000, 'eval_rows': 20_000, 'max_buckets': 100_000,
              'embedding_dim': 16, 'hidden_units': [256, 128], 'batch_sizes': [1024],
             'numeric_columns': 13, 'categorical_columns': 26},
    'full': {'train_rows': 1_000_000, 'eval_rows': 100_000, 'max_buckets': 1_000_000,
             'embedding_dim': 16, 'hidden_units': [512, 256, 128], 'batch_sizes': [1024, 8192],
             'numeric_columns': 13, 'categorical_columns': 26},
}


def bucket_sizes(max_buckets: int, n_cat: int = N_CATEGORICAL, multiple: int = 1) -> list[int]:
  """Hash buckets of `C1..C<n_cat>`: `min(cardinality, max_buckets)`, at least 2, rounded up to
  a multiple of `multiple` (so a sharded table's rows divide over the devices)."""
  return [-(-max(2, min(c, max_buckets)) // multiple) * multiple
          for c in CRITEO_CARDINALITIES[:n_cat]]


def make_data(rows: int, max_buckets: int, seed: int, n_num: int = N_NUMERIC,
              n_cat: int = N_CATEGORICAL) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """`(features, labels)`: `I1..I<n_num>` float32 [rows], `C1..C<n_cat>` int64 [rows], labels
  in {0, 1} float32 [rows].

  The label model is fixed (seed 1234) whatever `seed` draws, so train and eval data agree.
  """
  rng = np.random.default_rng(seed)
  truth = np.random.default_rng(1234)
  x: dict[str, np.ndarray] = {}
  logit = np.full(rows, -1.0)
  w = truth.normal(0, 0.25, N_NUMERIC)
  for i in range(n_num):
    v = np.log1p(rng.lognormal(1.0, 1.2, rows)).astype(np.float32)
    x[f'I{i + 1}'] = v
    logit += w[i] * (v - 1.2)
  for i, card in enumerate(CRITEO_CARDINALITIES[:n_cat]):
    # The generating cardinality is capped with the buckets, so the data stays learnable when
    # the suite shrinks the tables.
    card = min(card, 4 * max_buckets)
    ids = np.floor(card ** rng.random(rows)).astype(np.int64) - 1  # log-uniform on [0, card)
    x[f'C{i + 1}'] = ids * 7919 + i  # raw values: distinct per column, not the ids themselves
    effect = truth.normal(0, 0.4 if card > 10 else 0.2, 1009)
    logit += effect[ids % 1009]
  y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
  return x, y


def feature_columns(max_buckets: int, dim: int, n_num: int = N_NUMERIC,
                    n_cat: int = N_CATEGORICAL, multiple: int = 1) -> tuple[list, list]:
  """`(wide, deep)`: the hashed columns; the numerics + embeddings of the hashed columns."""
  from jestimator import columns as fc
  hashed = [fc.categorical_column_with_hash_bucket(f'C{i + 1}', n, dtype=np.int64)
            for i, n in enumerate(bucket_sizes(max_buckets, n_cat, multiple))]
  deep = [fc.numeric_column(f'I{i + 1}') for i in range(n_num)]
  deep += [fc.embedding_column(c, dimension=dim) for c in hashed]
  return hashed, deep


def preprocess(x: dict[str, np.ndarray], max_buckets: int, n_num: int = N_NUMERIC,
               n_cat: int = N_CATEGORICAL, multiple: int = 1) -> dict[str, np.ndarray]:
  """The baseline's own hashing: `{'numeric': [n, n_num] float32, 'ids': [n, n_cat] int32}`."""
  sizes = np.array(bucket_sizes(max_buckets, n_cat, multiple), np.uint64)
  raw = np.stack([x[f'C{i + 1}'] for i in range(n_cat)], 1).astype(np.uint64)
  # A multiplicative hash (Knuth), then modulo each column's bucket count.
  ids = ((raw * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(17)) % sizes
  numeric = np.stack([x[f'I{i + 1}'] for i in range(n_num)], 1).astype(np.float32)
  return {'numeric': numeric, 'ids': ids.astype(np.int32)}


class WideDeep(nn.Module):
  """Hand-written wide & deep over `{'numeric', 'ids'}`: per-column tables, MLP, one logit."""
  sizes: tuple
  dim: int
  hidden_units: tuple

  @nn.compact
  def __call__(self, f):
    ids = f['ids']
    deep = [f['numeric']] + [nn.Embed(n, self.dim, name=f'embed_{i}')(ids[:, i])
                             for i, n in enumerate(self.sizes)]
    x = jnp.concatenate(deep, -1)
    for i, units in enumerate(self.hidden_units):
      x = nn.relu(nn.Dense(units, kernel_init=nn.initializers.glorot_uniform(),
                           name=f'dnn_{i}')(x))
    logit = nn.Dense(1, kernel_init=nn.initializers.glorot_uniform(), name='dnn_logits')(x)[:, 0]
    wide = [nn.Embed(n, 1, embedding_init=nn.initializers.zeros, name=f'wide_{i}')(ids[:, i])[:, 0]
            for i, n in enumerate(self.sizes)]
    return logit + sum(wide) + self.param('wide_bias', nn.initializers.zeros, ())


def make_task(train_rows: int, eval_rows: int, max_buckets: int, embedding_dim: int,
              hidden_units, n_num: int = N_NUMERIC, n_cat: int = N_CATEGORICAL,
              multiple: int = 1) -> Task:
  """The CTR task: fresh synthetic data (train seed 0, eval seed 1); bucket counts rounded up
  to a multiple of `multiple`."""
  from jestimator import canned
  from jestimator.canned.optimizers import ftrl  # optax has no FTRL; TF's one, as in canned
  x, y = make_data(train_rows, max_buckets, 0, n_num, n_cat)
  ex, ey = make_data(eval_rows, max_buckets, 1, n_num, n_cat)
  wide, deep = feature_columns(max_buckets, embedding_dim, n_num, n_cat, multiple)
  hidden = list(hidden_units)

  def make_estimator(config):
    return canned.DNNLinearCombinedClassifier(linear_feature_columns=wide,
                                              dnn_feature_columns=deep, dnn_hidden_units=hidden,
                                              config=config)

  optimizer = optax.multi_transform(
      {'wide': ftrl(min(0.005, n_cat ** -0.5)),
       'deep': optax.adagrad(0.05, initial_accumulator_value=0.1, eps=1e-7)},
      lambda params: {k: 'wide' if k.startswith('wide_') else 'deep' for k in params})
  return Task(make_estimator=make_estimator, train_x=x, train_y=y, eval_x=ex, eval_y=ey,
              module=WideDeep(tuple(bucket_sizes(max_buckets, n_cat, multiple)), embedding_dim,
                              tuple(hidden)),
              optimizer=optimizer,
              base_train_x=preprocess(x, max_buckets, n_num, n_cat, multiple),
              base_train_y=y, base_eval_x=preprocess(ex, max_buckets, n_num, n_cat, multiple),
              base_eval_y=ey,
              metric_keys={'loss': 'average_loss', 'accuracy': 'accuracy', 'auc': 'auc'})


def run(config: dict[str, Any], budget: Budget, progress: Callable[[str], None]) -> dict[str, Any]:
  """One case per batch size; with several devices, also the first batch size with the state
  replicated (`DataParallel()`) and sharded (`DataParallel(partitioner=MinSizePartitioner(...))`)
  over all of them, each with its memory plan."""
  progress(f'generating {config["train_rows"]:,} + {config["eval_rows"]:,} rows')
  n_num = config.get('numeric_columns', N_NUMERIC)
  n_cat = config.get('categorical_columns', N_CATEGORICAL)
  task = make_task(config['train_rows'], config['eval_rows'], config['max_buckets'],
                   config['embedding_dim'], config['hidden_units'], n_num, n_cat)
  params = {k: config[k] for k in ('train_rows', 'max_buckets', 'embedding_dim')}
  cases = [run_case(task, f'wide_deep/batch={b}', {**params, 'batch_size': b}, b, budget,
                    progress=progress)
           for b in config['batch_sizes']]
  import jax
  n = jax.device_count()
  if n > 1:
    task = make_task(config['train_rows'], config['eval_rows'], config['max_buckets'],
                     config['embedding_dim'], config['hidden_units'], n_num, n_cat, multiple=n)
    cases += sharded_cases(task, config, params, n, budget, progress)
  return {'cases': cases}


#: Tables at least this large are sharded in the sharded case (every `full` and `quick` table of
#: 1e5 buckets and more; the DNN kernels stay replicated).
SHARD_BYTES = 1 << 20


def sharded_cases(task: Task, config: dict[str, Any], params: dict[str, Any], n: int,
                  budget: Budget, progress: Callable[[str], None]) -> list[dict[str, Any]]:
  """Replicated against sharded state on all `n` devices (bucket counts rounded up to multiples
  of `n`), each case with `memory_plan`: per-device bytes of state, temporaries, outputs not
  aliased to the donated state, and their total, from `Estimator.memory_plan`."""
  import dataclasses
  import tempfile

  import jax

  import jestimator as je
  from jestimator import distributed as jd
  b = -(-config['batch_sizes'][0] // n) * n
  cases = []
  shard_bytes = config.get('min_shard_bytes', SHARD_BYTES)
  for name, strategy in (('replicated', jd.DataParallel()), (
      'sharded', jd.DataParallel(partitioner=jd.MinSizePartitioner(shard_bytes)))):
    case = f'wide_deep/{name}/devices={n}/batch={b}'
    entry = run_case(task, case, {**params, 'batch_size': b, 'devices': n, 'state': name,
                                  'min_shard_bytes': shard_bytes if name == 'sharded' else None},
                     b, budget, strategy=strategy, devices=jax.devices(), progress=progress)
    with tempfile.TemporaryDirectory() as d:
      est = task.make_estimator(je.RunConfig(model_dir=d, strategy=strategy))
      batch = ({k: v[:b] for k, v in task.train_x.items()}, task.train_y[:b])
      plan = est.memory_plan(lambda: iter([batch]))
    entry['memory_plan'] = {
        k: v for k, v in dataclasses.asdict(plan).items() if k != 'largest'} | {
            'total_bytes': plan.total_bytes, 'step_own_bytes': plan.temp_bytes +
            plan.output_bytes - plan.alias_bytes}
    progress(f'{case}: {plan.summary().splitlines()[0]}')
    cases.append(entry)
  return cases
