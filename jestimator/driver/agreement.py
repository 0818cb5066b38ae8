"""Decisions all processes of a multi-process run must take together."""
from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger('jestimator')


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


class Agreement:
  """The decisions of one run that all its processes take together; on a single process every
  method returns its arguments as they came, with no collective (and no device sync).

  Args:
    process_count: processes in the run (`jax.process_count()`; see `of_this_run`).
    gather: as in `any_process` (for tests).
  """

  def __init__(self, process_count: int = 1, gather=None):
    self.process_count = process_count
    self._gather = gather

  @classmethod
  def of_this_run(cls) -> 'Agreement':
    import jax  # deferred: the helpers above need numpy only
    return cls(jax.process_count())

  @property
  def single(self) -> bool:
    return self.process_count == 1

  def any(self, *flags: bool) -> tuple[bool, ...]:
    """Each flag OR-ed over the processes (see `any_process`)."""
    if self.single:
      return tuple(bool(f) for f in flags)
    return any_process(*flags, gather=self._gather)

  def next_group(self, stop: bool, due: bool, group: list, step: int) -> tuple[bool, bool, list]:
    """`(stop, due, group)` of the train loop, agreed over all processes in one collective.

    Stop and save when any process asks. An empty `group` that is not a stop means this process's
    input ended; the next group then runs nowhere (inputs of different lengths end together at the
    first end, as one input's end ends single-process training), nor when the processes' next
    groups differ in shape (a short final batch on one of them).
    """
    if self.single:
      return stop, due, group
    ended = not group and not stop
    shape = (len(group), group[0].size) if group else (0, 0)
    table = gather_ints([stop, due, ended, *shape], self._gather)
    stop, due, ended = (bool(v) for v in table[:, :3].max(axis=0))
    if stop:
      return stop, due, []
    if group and (ended or (table[:, 3:] != table[0, 3:]).any()):
      logger.warning(
          'The inputs of the processes end at different steps (next dispatch per process as '
          '[steps, rows]: %s): all stop at step %d, as at the end of input',
          table[:, 3:].tolist(), step)
      group = []
    return stop, due, group
