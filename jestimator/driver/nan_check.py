"""The train loop's NaN check: a non-finite flag per step, computed on the device, read at syncs.

Every train step returns `nonfinite` (the loss is NaN or infinite). The loop keeps the flags of
the dispatches since the last check as device arrays, and reads them all in one transfer at the
next point where it waits for the device anyway (a hook fetching values, a checkpoint, the end),
so checking costs no extra sync. The first bad step is exact even when it happened several
dispatches earlier. A state is never checkpointed after a bad step.
"""
from __future__ import annotations

import logging

import jax
import numpy as np

from jestimator.driver.hooks import NanLossDuringTrainingError

logger = logging.getLogger('jestimator')

# Read the flags after this many unread dispatches even without another reason to sync.
MAX_PENDING = 1000


class NanCheck:
  """Tracks the `nonfinite` step outputs of one train() call.

  Args:
    enabled: `RunConfig.check_nan_loss`; when False nothing is tracked and every state may be
      saved.
    fail: `RunConfig.fail_on_nan_loss`: raise `NanLossDuringTrainingError` (TF's
      `NanTensorHook` default); else log an error and stop (without saving the non-finite
      state). Only the RunConfig sets it, never a hook.
  """

  def __init__(self, enabled: bool = True, fail: bool = True):
    self.enabled, self.fail = enabled, fail
    self._pending: list[tuple[int, jax.Array]] = []
    self._seen = None
    self.bad_step: int | None = None

  def add(self, first_step: int, nonfinite, seen=None) -> None:
    """Flags of a dispatch whose first step is global step `first_step` (scalar or `[K]`).

    `seen`: a step program's sticky flag, True once any step of this train() was non-finite,
    given with every dispatch or none: `check()` then reads only the latest one unless it is
    True (each flag read costs microseconds of host time).
    """
    if self.enabled and self.bad_step is None:
      self._pending.append((first_step, nonfinite))
      self._seen = seen

  @property
  def overdue(self) -> bool:
    return len(self._pending) >= MAX_PENDING

  def check(self) -> bool:
    """Reads the pending flags; True when every step so far was finite.

    Raises `NanLossDuringTrainingError` naming the first bad step (when `fail`).
    """
    if self.bad_step is None and self._seen is not None and not bool(self._seen):
      self._pending.clear()  # no step of this train() so far was non-finite
    if self.bad_step is None and self._pending:
      flags = jax.device_get([f for _, f in self._pending])
      for (first, _), f in zip(self._pending, flags):
        bad = np.flatnonzero(np.atleast_1d(np.asarray(f)))
        if bad.size:
          self.bad_step = first + int(bad[0])
          break
      self._pending.clear()
      if self.bad_step is not None:
        message = (f'NaN or infinite loss during training at step {self.bad_step}; no '
                   'checkpoint was written after it')
        if self.fail:
          raise NanLossDuringTrainingError(message)
        logger.error('%s; stopping', message)
    return self.bad_step is None
