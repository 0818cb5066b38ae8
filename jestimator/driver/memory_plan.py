"""The memory plan: per-device bytes of the train step, known before anything is allocated.

The train step is lowered and compiled from abstract arguments placed as the strategy places them
(`Strategy.abstract`, `abstract_batch`); XLA's `memory_analysis()` of the compiled (per-device)
program gives the bytes of the arguments (state + batch), outputs, the outputs that reuse donated
argument buffers, and temporaries. Nothing is allocated, so a state far larger than a device can
be planned on a laptop. `train()` computes the plan before it creates or restores the state when
the strategy shards it (`DataParallel(partitioner=...)`) or `RunConfig.device_memory_bytes` is
set, logs it at INFO and fails with a ValueError when it exceeds the device's memory;
`Estimator.memory_plan(input_fn)` returns it without training.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax
import numpy as np

from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline.plan import BatchPlan

logger = logging.getLogger('jestimator')



def human(n: float) -> str:
  """`n` bytes as B, KiB, MiB or GiB."""
  for unit, size in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
    if abs(n) >= size:
      return f'{n / size:.2f} {unit}'
  return f'{int(n)} B'


@dataclasses.dataclass(frozen=True)
class ParameterBytes:
  """One parameter's size: `path`, `shape`, `dtype`, placement (`spec`: its PartitionSpec, or
  'replicated': whole on every device) and bytes whole and per device."""
  path: str
  shape: tuple[int, ...]
  dtype: str
  spec: str
  nbytes: int
  bytes_per_device: int


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Per-device bytes of one train step (all figures per device).

  Attributes:
    state_bytes: the train state (parameters, optimizer slots, step, rng).
    batch_bytes: the step's other arguments (features, labels, mask).
    output_bytes: the step's outputs (the new state, loss, ...).
    alias_bytes: outputs written into donated argument buffers (not allocated again).
    temp_bytes: XLA's temporaries.
    device_limit: the device's memory (`memory_stats()['bytes_limit']`, else
      `RunConfig.device_memory_bytes`), or None when unknown.
    limit_source: where `device_limit` came from.
    largest: the ten largest parameters.
    compile_seconds: how long compiling the step took.
  """
  state_bytes: int
  batch_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  device_limit: int | None
  limit_source: str
  largest: tuple[ParameterBytes, ...]
  compile_seconds: float

  @property
  def total_bytes(self) -> int:
    """Peak bytes the step needs on one device: arguments, outputs not aliased to them,
    temporaries."""
    return self.state_bytes + self.batch_bytes + self.output_bytes - self.alias_bytes + \
        self.temp_bytes

  @property
  def fits(self) -> bool:
    return self.device_limit is None or self.total_bytes <= self.device_limit

  def summary(self) -> str:
    """A multi-line report (what `train()` logs)."""
    limit = ('unknown (set RunConfig.device_memory_bytes to check it)'
             if self.device_limit is None else f'{human(self.device_limit)} '
             f'({self.limit_source})')
    lines = [f'Memory plan per device: {human(self.total_bytes)} = state '
             f'{human(self.state_bytes)} + batch {human(self.batch_bytes)} + outputs '
             f'{human(self.output_bytes)} - aliased to donated inputs '
             f'{human(self.alias_bytes)} + temporaries {human(self.temp_bytes)}; '
             f'device memory {limit}; compiled in {self.compile_seconds:.1f} s. Largest '
             'parameters:']
    lines += [f'  {p.path} {list(p.shape)} {p.dtype} {p.spec}: {human(p.nbytes)}, '
              f'{human(p.bytes_per_device)} per device' for p in self.largest]
    return '\n'.join(lines)

  def check(self) -> None:
    """Raises ValueError naming the largest parameters when the plan exceeds the device."""
    if self.fits:
      return
    whole = [p for p in self.largest if p.spec == 'replicated']
    names = ', '.join(f'{p.path} ({human(p.nbytes)}, {p.spec})' for p in self.largest[:5])
    advice = ('shard the large ones with RunConfig(strategy=jestimator.distributed.DataParallel('
              'partitioner=MinSizePartitioner(min_shard_bytes=...))), or a smaller min_shard_bytes'
              if whole else 'use more devices, or shard along more mesh axes')
    raise ValueError(
        f'the train step needs {human(self.total_bytes)} per device (state '
        f'{human(self.state_bytes)}, batch {human(self.batch_bytes)}, temporaries '
        f'{human(self.temp_bytes)}) but the device has {human(self.device_limit)} '
        f'({self.limit_source}); the largest parameters are {names}: {advice}; or a smaller batch')


def wanted(strategy: Any, abstract_state: Any, device_memory_bytes: int | None) -> bool:
  """Whether `train()` plans memory first: a sharded state, or a limit set by the user."""
  return (device_memory_bytes is not None or
          strategy.state_shardings(abstract_state) is not None)


def for_train(compiled: Any, features: Any, labels: Any,
              device_memory_bytes: int | None = None) -> MemoryPlan:
  """The memory plan of `compiled`'s train step on a batch like (`features`, `labels`) (host
  numbers, the first batch); allocates nothing.

  Raises:
    ValueError: the strategy cannot place abstract values (say `Pmap`).
  """
  strategy = compiled.strategy
  abstract = compiled.abstract_train_state(features, labels)
  traced = compiled.traced(ModeKeys.TRAIN, abstract.variables, features, labels)
  size = int(np.shape(jax.tree.leaves(features)[0])[0])
  plan = BatchPlan.for_train(size, strategy.pads_train_batches, traced.padding_aware,
                             bool(abstract.collections))
  try:
    state = strategy.abstract(abstract)
    batch = (strategy.abstract_batch(_spec(features)), strategy.abstract_batch(_spec(labels)))
    if plan.masked:
      batch += (strategy.abstract_batch(jax.ShapeDtypeStruct((plan.size,), np.float32)),)
  except NotImplementedError:
    raise ValueError(f'a memory plan needs a strategy that places abstract values (SingleDevice, '
                     f'DataParallel); {type(strategy).__name__} does not') from None
  start = time.perf_counter()
  stats = compiled.train_step().lower(state, *batch).compile().memory_analysis()
  seconds = time.perf_counter() - start
  state_bytes = sum(_device_bytes(a) for a in jax.tree.leaves(state))
  limit, source = _device_limit(device_memory_bytes)
  return MemoryPlan(
      state_bytes=state_bytes,
      batch_bytes=max(int(stats.argument_size_in_bytes) - state_bytes, 0),
      output_bytes=int(stats.output_size_in_bytes), alias_bytes=int(stats.alias_size_in_bytes),
      temp_bytes=int(stats.temp_size_in_bytes), device_limit=limit, limit_source=source,
      largest=_largest(state.params), compile_seconds=seconds)


def _spec(tree):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), tree)


def _device_bytes(a: jax.ShapeDtypeStruct) -> int:
  shape = a.sharding.shard_shape(a.shape) if a.sharding is not None else a.shape
  return int(np.prod(shape, dtype=np.int64)) * np.dtype(a.dtype).itemsize


def _largest(params: Any, n: int = 10) -> tuple[ParameterBytes, ...]:
  rows = []
  for path, a in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = 'params/' + '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)
    spec = getattr(a.sharding, 'spec', None)
    sharded = spec is not None and any(s is not None for s in spec)
    rows.append(ParameterBytes(name, tuple(a.shape), str(np.dtype(a.dtype)),
                               str(spec) if sharded else 'replicated',
                               int(np.prod(a.shape, dtype=np.int64)) * np.dtype(a.dtype).itemsize,
                               _device_bytes(a)))
  return tuple(sorted(rows, key=lambda p: -p.nbytes)[:n])


def _device_limit(configured: int | None) -> tuple[int | None, str]:
  """The device's memory: what the runtime reports, else the configured value."""
  device = jax.local_devices()[0]
  try:
    stats = device.memory_stats() or {}
  except Exception:  # noqa: BLE001 - a backend without memory statistics (say CPU)
    stats = {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f'{device.device_kind} memory_stats()'
  if configured is not None:
    return int(configured), 'RunConfig.device_memory_bytes'
  return None, 'unknown'


def plan_and_check(compiled: Any, features: Any, labels: Any,
                   device_memory_bytes: int | None) -> MemoryPlan | None:
  """In `train()`, before the state exists: the plan, logged at INFO and checked, when
  `wanted`; else None (nothing compiled)."""
  abstract = compiled.abstract_train_state(features, labels)
  if not wanted(compiled.strategy, abstract, device_memory_bytes):
    return None
  plan = for_train(compiled, features, labels, device_memory_bytes)
  logger.info('%s', plan.summary())
  plan.check()
  return plan
