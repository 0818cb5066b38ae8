"""A benchmark case: one model on one data set, run by the Estimator and by a hand-written loop.

Every workload builds `Task`s (binary classification throughout, so one baseline loop and one set
of quality figures fit all) and calls `run_case`, which runs the baseline first, then the Estimator
on the baseline's plan, and returns both result dicts and their ratios.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from benchmarks.workloads import _baseline, _estimator
from benchmarks.workloads._measure import Budget

# Figures compared as jestimator / baseline. For throughputs a ratio below 1 means the Estimator
# is slower; for times (compile, step, checkpoint) a ratio above 1 means it is slower.
RATIO_KEYS = ('train_examples_per_sec', 'step_time_ms_p50', 'eval_examples_per_sec',
              'predict_examples_per_sec', 'compile_s', 'time_to_first_step_s',
              'checkpoint_save_s', 'checkpoint_restore_s')

# Every per-runner result dict carries exactly these keys (the JSON schema checks them).
RUN_KEYS = ('batch_size', 'steps_per_loop', 'devices', 'train_steps', 'time_to_first_step_s',
            'compile_s', 'train_examples_per_sec', 'train_examples_per_sec_min',
            'train_examples_per_sec_max', 'train_examples_per_sec_repeats', 'step_time_ms_p50',
            'step_time_ms_p90', 'eval_examples_per_sec', 'predict_examples_per_sec',
            'checkpoint_save_s', 'checkpoint_restore_s', 'checkpoint_mib', 'peak_host_rss_mib',
            'peak_device_mib', 'quality')


@dataclasses.dataclass
class Task:
  """One binary classification problem, as each runner sees it.

  Attributes:
    make_estimator: `(config: RunConfig) -> Estimator` (config carries model_dir, seed,
      steps_per_loop and strategy; the workload adds nothing that changes the timing).
    train_x, train_y, eval_x, eval_y: raw data for the Estimator (dicts of numpy arrays,
      strings allowed; labels in whatever form the estimator takes).
    module: Flax module of the baseline; `module.apply({'params': p}, features)` -> logits [B].
    optimizer: optax optimizer of the baseline (the one the Estimator's model uses).
    base_train_x, base_eval_x: pre-processed numeric feature dicts for the baseline.
    base_train_y, base_eval_y: float32 labels in {0, 1}.
    metric_keys: `evaluate()` result keys read as quality `loss`, `accuracy`, `auc`.
  """
  make_estimator: Callable[[Any], Any]
  train_x: Mapping[str, np.ndarray]
  train_y: Any
  eval_x: Mapping[str, np.ndarray]
  eval_y: Any
  module: Any
  optimizer: Any
  base_train_x: Mapping[str, np.ndarray]
  base_train_y: np.ndarray
  base_eval_x: Mapping[str, np.ndarray]
  base_eval_y: np.ndarray
  metric_keys: Mapping[str, str] = dataclasses.field(
      default_factory=lambda: {'loss': 'loss', 'accuracy': 'accuracy', 'auc': 'auc'})


def ratios(est: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, float | None]:
  """`est[k] / base[k]` for the `RATIO_KEYS` (None where either is missing or zero)."""
  out = {}
  for k in RATIO_KEYS:
    a, b = est.get(k), base.get(k)
    out[k] = float(a) / float(b) if a is not None and b not in (None, 0) else None
  return out


def run_case(task: Task, case: str, params: Mapping[str, Any], batch_size: int, budget: Budget,
             steps_per_loop: int = 1, strategy: Any = None,
             devices: Sequence[Any] | None = None,
             progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
  """Runs the baseline then the Estimator on `task`; returns the case's result entry.

  Args:
    case: the case's name within its workload (unique; `compare` matches cases by it).
    params: what distinguishes the case (batch size, model, ...), recorded as is.
    batch_size: global examples per step.
    budget: time budget of the baseline; the Estimator replays the baseline's plan.
    steps_per_loop: steps per dispatch (a `lax.scan` loop in the baseline when > 1).
    strategy: the Estimator's `RunConfig.strategy` (None: single device).
    devices: the baseline's devices (its batch is sharded over them); None: the default one.
  """
  progress(f'{case}: baseline')
  base = _baseline.run(task, batch_size, budget, steps_per_loop, devices)
  plan = base.pop('plan')
  progress(f'{case}: jestimator ({plan.dispatches} dispatches x {steps_per_loop} steps)')
  est = _estimator.run(task, batch_size, plan, steps_per_loop, strategy, devices)
  entry = {'case': case, 'params': dict(params), 'jestimator': est, 'baseline': base,
           'ratio': ratios(est, base)}
  r = entry['ratio']['train_examples_per_sec']
  progress(f'{case}: train {est["train_examples_per_sec"]:,.0f} ex/s vs baseline '
           f'{base["train_examples_per_sec"]:,.0f} ex/s (ratio {r:.2f})')
  return entry
