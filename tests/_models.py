"""Tiny models and synthetic data shared by the core tests (and the subprocess scripts).

Everything here is deterministic: data comes from fixed numpy seeds and models are a few units wide,
so a step compiles in well under a second on CPU.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jestimator import metrics
from jestimator.mode_keys import ModeKeys
from jestimator.padding import example_mask
from jestimator.spec import EstimatorSpec

N_FEATURES = 4


def make_data(n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """`x` float32 [n, 4] and binary labels `y` float32 [n] (a noisy linear rule)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
  w = np.array([1.0, -2.0, 0.5, 1.5], np.float32)
  y = ((x @ w + 0.3 * rng.normal(size=n)) > 0).astype(np.float32)
  return x, y


class Calls:
  """Counts model_fn calls per mode and records the batch sizes it was traced with."""

  def __init__(self):
    self.modes: list[str] = []
    self.sizes: list[tuple[str, int]] = []

  def record(self, mode: str, features) -> None:
    self.modes.append(mode)
    self.sizes.append((mode, int(features['x'].shape[0])))

  def count(self, mode: str | None = None) -> int:
    return len(self.modes) if mode is None else self.modes.count(mode)


def linear_model_fn(calls: Calls | None = None, padding_aware: bool | str = False,
                    lr: float = 0.1, optimizer: Callable[[float], Any] = optax.sgd) -> Callable:
  """Logistic regression `sigmoid(x @ w + b)`.

  Loss: mean sigmoid cross-entropy over the batch, `jnp.mean` (plain) or weighted by
  `example_mask()` (padding-aware; `'train_only'`: only in TRAIN mode, `jnp.mean` otherwise).
  Eval metrics: `accuracy` at 0.5 and `mean_prob`.
  """

  def model_fn(features, labels, mode):
    if calls is not None:
      calls.record(mode, features)
    logits = nn.Dense(1)(features['x'])[:, 0]
    probs = jax.nn.sigmoid(logits)
    if mode == ModeKeys.PREDICT:
      return EstimatorSpec(mode, predictions={'probs': probs, 'logits': logits,
                                              'x': features['x']})
    per_example = optax.sigmoid_binary_cross_entropy(logits, labels)
    if padding_aware is True or (padding_aware == 'train_only' and mode == ModeKeys.TRAIN):
      mask = example_mask()
      mask = jnp.ones_like(per_example) if mask is None else mask
      loss = jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    else:
      loss = jnp.mean(per_example)
    return EstimatorSpec(
        mode, loss=loss, optimizer=optimizer(lr),
        eval_metrics={'accuracy': metrics.accuracy(labels, (probs > 0.5).astype(jnp.float32)),
                      'mean_prob': metrics.mean(probs)})

  return model_fn


def numpy_logistic_loss(x: np.ndarray, y: np.ndarray, kernel: np.ndarray, bias: np.ndarray
                        ) -> np.ndarray:
  """Per-example sigmoid cross-entropy in float64 numpy (independent of the code under test)."""
  z = x.astype(np.float64) @ kernel.astype(np.float64)[:, 0] + float(bias[0])
  return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def mlp_model_fn(calls: Calls | None = None, lr: float = 0.05) -> Callable:
  """An MLP with dropout and BatchNorm built inline; the model_fn also takes `params`."""

  def model_fn(features, labels, mode, params):
    if calls is not None:
      calls.record(mode, features)
    h = nn.relu(nn.Dense(8)(features['x']))
    h = nn.Dropout(0.3, deterministic=mode != ModeKeys.TRAIN)(h)
    h = nn.BatchNorm(use_running_average=mode != ModeKeys.TRAIN, momentum=0.5)(h)
    logits = nn.Dense(1)(h)[:, 0]
    if mode == ModeKeys.PREDICT:
      return EstimatorSpec(mode, predictions={'logits': logits})
    loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    return EstimatorSpec(mode, loss=loss, optimizer=optax.adam(params.get('lr', lr)))

  return model_fn


def tree_equal(a, b) -> bool:
  """Bitwise equality of two pytrees of arrays."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
      for x, y in zip(la, lb))


def checkpoint_params(est) -> dict[str, np.ndarray]:
  """`{name: value}` of every variable in the estimator's latest checkpoint (one restore).

  Same values as `est.get_variable_value(name)` for each of `est.get_variable_names()` (checked
  in test_estimator.py), read at once because each get_variable_value restores the checkpoint.
  """
  from jestimator.checkpoints import Checkpointer
  ckpt = Checkpointer(est.model_dir, read_only=True)
  step = ckpt.latest_step()
  out = dict(ckpt.restore_raw_variables(step))
  out['global_step'] = np.asarray(step, np.int64)
  return out


def dir_snapshot(path) -> dict[str, tuple[int, float]]:
  """`{relative file path: (size, mtime)}` of everything under `path` (for "nothing changed")."""
  import os
  out = {}
  if not os.path.exists(path):
    return out
  for root, dirs, files in os.walk(path):
    for name in dirs + files:
      full = os.path.join(root, name)
      st = os.stat(full)
      out[os.path.relpath(full, path)] = (st.st_size, st.st_mtime_ns)
  return out

