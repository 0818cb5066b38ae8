"""Dense MLP, custom `model_fn`, synthetic data, across batch sizes (64 ... 8192 in `full`).

The model is `benchmarks.overhead.MLP` (3 ReLU layers of `hidden` units + a logit) on Gaussian
inputs whose label is the sign of the sum of the first 8 features; Adam at 1e-3. Both runners use
the same module and optimizer, so the ratio is the Estimator's own cost: input pipeline (host
batches from `numpy_input_fn`), hooks, step bookkeeping, checkpoints.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jestimator as je
from benchmarks.overhead import MLP, make_data
from benchmarks.workloads._measure import Budget
from benchmarks.workloads._task import Task, run_case

NAME = 'mlp'
DESCRIPTION = 'dense MLP custom model_fn on synthetic data, across batch sizes'

CONFIGS = {
    'tiny': {'batch_sizes': [32], 'hidden': 16, 'dim': 8, 'train_rows': 512, 'eval_rows': 100},
    'quick': {'batch_sizes': [64, 512, 4096, 8192], 'hidden': 256, 'dim': 64,
              'train_rows': 65536, 'eval_rows': 16384},
    'full': {'batch_sizes': [64, 256, 1024, 4096, 8192], 'hidden': 512, 'dim': 64,
             'train_rows': 262144, 'eval_rows': 65536},
}


def model_fn(features, labels, mode, params):
  """Binary MLP classifier; the loss honours the padding mask (see `jestimator.padding`)."""
  logits = MLP(params['hidden'], name='mlp')(features['x'])
  probs = jax.nn.sigmoid(logits)
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'probabilities': probs})
  per_example = optax.sigmoid_binary_cross_entropy(logits, labels)
  mask = je.example_mask()
  loss = per_example.mean() if mask is None else (per_example * mask).sum() / mask.sum()
  metrics = None
  if mode == je.ModeKeys.EVAL:
    metrics = {'average_loss': je.metrics.mean(per_example),
               'accuracy': je.metrics.accuracy(labels, (probs > 0.5).astype(jnp.float32)),
               'auc': je.metrics.auc(labels, probs)}
  return je.EstimatorSpec(mode, predictions={'probabilities': probs}, loss=loss,
                          optimizer=optax.adam(1e-3), eval_metrics=metrics)


def make_task(hidden: int, dim: int, train_rows: int, eval_rows: int) -> Task:
  """The MLP task on fresh synthetic data (train seed 0, eval seed 1)."""
  x, y = make_data(train_rows, dim, seed=0)
  ex, ey = make_data(eval_rows, dim, seed=1)
  return Task(
      make_estimator=lambda config: je.Estimator(model_fn, config=config,
                                                 params={'hidden': hidden}),
      train_x={'x': x}, train_y=y, eval_x={'x': ex}, eval_y=ey,
      module=_Logits(hidden), optimizer=optax.adam(1e-3),
      base_train_x={'x': x}, base_train_y=y, base_eval_x={'x': ex}, base_eval_y=ey,
      metric_keys={'loss': 'average_loss', 'accuracy': 'accuracy', 'auc': 'auc'})


class _Logits(nn.Module):
  """The baseline's model: `MLP` on `features['x']`, named as in the model_fn."""
  hidden: int

  @nn.compact
  def __call__(self, features):
    return MLP(self.hidden, name='mlp')(features['x'])


def run(config: dict[str, Any], budget: Budget, progress: Callable[[str], None]) -> dict[str, Any]:
  """One case per batch size."""
  task = make_task(config['hidden'], config['dim'], config['train_rows'], config['eval_rows'])
  cases = [run_case(task, f'batch={b}', {'batch_size': b, 'hidden': config['hidden']}, b, budget,
                    progress=progress)
           for b in config['batch_sizes']]
  return {'cases': cases}
