"""Decisions all processes of a multi-process run must take together."""
from __future__ import annotations

import numpy as np


def any_process(*flags: bool, gather=None) -> tuple[bool, ...]:
  """Each flag OR-ed over all processes: one small collective, so every process calls it.

  `gather` (for tests) maps an int32 `[len(flags)]` array to `[processes, len(flags)]`; by default
  `multihost_utils.process_allgather`. Called only when `jax.process_count() > 1`, so
  single-process training keeps no extra device sync.
  """
  table = gather_ints([bool(f) for f in flags], gather)
  return tuple(bool(v) for v in table.max(axis=0))


def gather_ints(values, gather=None) -> np.ndarray:
  """`[processes, len(values)]` int32: every process's `values`, in process order (one small
  collective, so every process calls it). `gather` as in `any_process`."""
  if gather is None:
    from jax.experimental import multihost_utils
    gather = multihost_utils.process_allgather
  local = np.asarray([int(v) for v in values], np.int32)
  return np.asarray(gather(local)).reshape(-1, len(local))
