"""Measuring tools shared by both runners: when to sync, how to summarise, memory and compile time.

Both the Estimator and the hand-written baseline are driven by the same `Clock`: the baseline runs
first with a time `Budget` (so a case takes about as long on a CPU as on a TPU) and the plan it
settles on (`Plan`: how many dispatches per phase) is replayed exactly by the Estimator, so both
train the same number of steps and their quality figures are comparable.

A run's phases, counted in dispatches (one dispatch = `steps_per_loop` optimizer steps):
  1. the first dispatch (trace + compile + run), synced: `time_to_first_step_s`;
  2. `warmup` dispatches, synced at the end (not timed);
  3. `repeats` windows of `window` dispatches, synced only at window ends: examples/sec per window;
  4. `latency` dispatches, each synced: the step time distribution (p50 / p90).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')


@dataclasses.dataclass(frozen=True)
class Budget:
  """How long each phase of a case should take (the baseline turns it into a `Plan`).

  Attributes:
    warmup: dispatches after the first one, not timed.
    repeats: timed windows (the throughput median / min / max are over these).
    window_s: target seconds per window; the window length in dispatches is clamped to
      [min_window, max_window].
    latency_s: target seconds of individually synced dispatches, clamped to
      [min_latency, max_latency] dispatches.
  """
  warmup: int = 5
  repeats: int = 3
  window_s: float = 1.0
  min_window: int = 2
  max_window: int = 2000
  latency_s: float = 0.5
  min_latency: int = 5
  max_latency: int = 200


@dataclasses.dataclass(frozen=True)
class Plan:
  """Dispatch counts of each phase (see the module docstring)."""
  warmup: int
  window: int
  repeats: int
  latency: int

  @property
  def dispatches(self) -> int:
    return 1 + self.warmup + self.window * self.repeats + self.latency


class Clock:
  """Decides after which dispatches to sync, and records the time of each sync.

  Give it a `Budget` (the window and latency lengths are sized from the warm-up's speed) or a
  fixed `Plan`. Dispatches are numbered from 1. `t0` is when the run started (before any setup),
  so the first sync time minus `t0` is the time to the first step. `now` is the time source.
  """

  def __init__(self, budget: Budget | None = None, plan: Plan | None = None,
               now: Callable[[], float] = time.perf_counter):
    if (budget is None) == (plan is None):
      raise ValueError('Clock takes a budget or a plan, exactly one')
    self.budget, self.plan, self._now = budget, plan, now
    self.t0 = now()
    self.times: dict[int, float] = {}
    if plan is None:
      self._warm_end = 1 + budget.warmup
    else:
      self._warm_end = 1 + plan.warmup

  def start(self) -> None:
    self.t0 = self._now()

  def sync_now(self, i: int) -> bool:
    """Whether dispatch `i` must be synced (its result fetched) and recorded."""
    if i == 1 or i == self._warm_end:
      return True
    plan = self.plan
    if plan is None:
      return False  # still warming up: the plan is not known yet
    k = i - self._warm_end
    windows_end = plan.window * plan.repeats
    if k <= windows_end:
      return k % plan.window == 0
    return k <= windows_end + plan.latency

  def record(self, i: int) -> None:
    """Call right after dispatch `i`'s result reached the host."""
    self.times[i] = self._now()
    if i == self._warm_end and self.plan is None:
      b = self.budget
      per = max((self.times[i] - self.times[1]) / max(b.warmup, 1), 1e-6)
      self.plan = Plan(warmup=b.warmup,
                       window=int(min(max(math.ceil(b.window_s / per), b.min_window),
                                      b.max_window)),
                       repeats=b.repeats,
                       latency=int(min(max(math.ceil(b.latency_s / per), b.min_latency),
                                       b.max_latency)))

  def done(self, i: int) -> bool:
    return self.plan is not None and i >= self.plan.dispatches

  @property
  def max_dispatches(self) -> int:
    """An upper bound on the dispatches of the run (for `max_steps`)."""
    if self.plan is not None:
      return self.plan.dispatches
    b = self.budget
    return 1 + b.warmup + b.max_window * b.repeats + b.max_latency

  def summary(self, examples_per_dispatch: int, steps_per_dispatch: int) -> dict[str, Any]:
    """Time to first step, examples/sec per window (median/min/max), step time p50/p90 (ms)."""
    p, w0 = self.plan, self._warm_end
    eps = []
    for r in range(p.repeats):
      a, b = w0 + r * p.window, w0 + (r + 1) * p.window
      eps.append(p.window * examples_per_dispatch / (self.times[b] - self.times[a]))
    last = w0 + p.window * p.repeats
    step_ms = [1e3 * (self.times[last + j] - self.times[last + j - 1]) / steps_per_dispatch
               for j in range(1, p.latency + 1)]
    return {
        'time_to_first_step_s': self.times[1] - self.t0,
        'train_steps': p.dispatches * steps_per_dispatch,
        'train_examples_per_sec': float(np.median(eps)),
        'train_examples_per_sec_min': float(np.min(eps)),
        'train_examples_per_sec_max': float(np.max(eps)),
        'train_examples_per_sec_repeats': [float(e) for e in eps],
        'step_time_ms_p50': float(np.percentile(step_ms, 50)),
        'step_time_ms_p90': float(np.percentile(step_ms, 90)),
    }


class CompileTimer:
  """Sums JAX's trace + lowering + XLA compile durations while active (a context manager).

  Uses `jax.monitoring` events, so it counts every compilation in the process, including ones
  the library triggers internally (init, steps, metric merges).
  """

  def __init__(self):
    self.seconds = 0.0
    self._active = False

  def _listener(self, event: str, duration: float, **kwargs) -> None:
    if self._active and event in _COMPILE_EVENTS:
      self.seconds += duration

  def __enter__(self) -> 'CompileTimer':
    self._active = True
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc) -> None:
    self._active = False
    jax.monitoring.unregister_event_duration_listener(self._listener)


# -- memory ---------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
  """Resets the kernel's peak-RSS mark of this process (Linux); False where unsupported."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def peak_rss_mib() -> float:
  """Peak resident memory since the last `reset_peak_rss` (Linux), else since process start."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  from benchmarks._machine import peak_rss_mib as process_peak
  return process_peak()


def peak_device_mib(devices: Sequence[Any] | None = None) -> float | None:
  """Largest `peak_bytes_in_use` over `devices` (all local ones by default), in MiB.

  None where the backend reports no memory statistics (the CPU backend). The peak is since
  process start (backends offer no reset), so later workloads include earlier ones' peaks.
  """
  peaks = []
  for d in devices or jax.local_devices():
    try:
      stats = d.memory_stats()
    except Exception:  # some backends raise instead of returning None
      stats = None
    if stats and 'peak_bytes_in_use' in stats:
      peaks.append(stats['peak_bytes_in_use'])
  return max(peaks) / 2**20 if peaks else None


def dir_mib(path: str) -> float:
  """Total size of the files under `path`, in MiB."""
  total = 0
  for root, _, files in os.walk(path):
    for name in files:
      try:
        total += os.path.getsize(os.path.join(root, name))
      except OSError:
        pass
  return total / 2**20


# -- quality --------------------------------------------------------------------------------------
def binary_quality(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
  """Mean log loss, accuracy at 0.5 and exact ROC AUC (ties averaged) of binary predictions.

  Args:
    labels: [n] in {0, 1}.
    probs: [n] predicted P(label = 1).
  """
  y = np.asarray(labels, np.float64).reshape(-1)
  p = np.clip(np.asarray(probs, np.float64).reshape(-1), 1e-7, 1 - 1e-7)
  loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
  acc = float(np.mean((p > 0.5) == (y > 0.5)))
  pos = y > 0.5
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  auc = None
  if n_pos and n_neg:
    order = np.argsort(p, kind='mergesort')
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # average ranks over ties (Mann-Whitney U)
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    auc = float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
  return {'loss': loss, 'accuracy': acc, 'auc': auc}
