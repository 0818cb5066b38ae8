"""Decisions all processes of a multi-process run must take together."""
from __future__ import annotations

import numpy as np


def any_process(*flags: bool, gather=None) -> tuple[bool, ...]:
  """Each flag OR-ed over all processes: one small collective, so every process calls it.

  `gather` (for tests) maps an int32 `[len(flags)]` array to `[processes, len(flags)]`; by default
  `multihost_utils.process_allgather`. Called only when `jax.process_count() > 1`, so
  single-process training keeps no extra device sync.
  """
  if gather is None:
    from jax.experimental import multihost_utils
    gather = multihost_utils.process_allgather
  local = np.asarray([bool(f) for f in flags], np.int32)
  table = np.asarray(gather(local)).reshape(-1, len(flags))
  return tuple(bool(v) for v in table.max(axis=0))
