"""Hooks: code that runs around the train / evaluate / predict loops.

A hook asks for host values only at its own cadence (by returning names from `before_step`), so
the default loop never blocks on the device every step. Life cycle, per loop:

  begin() -> after_create_state(state) -> [before_step(ctx) -> step -> after_step(ctx, values)]*
  -> end(state)

One "step" of the loop is one dispatch, which runs `ctx.num_steps` optimizer steps when
`RunConfig.steps_per_loop > 1`; `ctx.step` is the global step after it.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger('jestimator')


class StepContext:
  """What a hook sees around one dispatch.

  Attributes:
    mode: the ModeKeys of the loop.
    step: global step after this dispatch (train), or the number of batches run (eval/predict).
    num_steps: steps run by this dispatch.
    batch_size: examples per step.
  """

  def __init__(self, mode: str, step: int, num_steps: int, batch_size: int):
    self.mode, self.step, self.num_steps, self.batch_size = mode, step, num_steps, batch_size
    self.stop_requested = False

  def request_stop(self) -> None:
    """Ends the loop after this dispatch (a checkpoint is still saved at the end of train)."""
    self.stop_requested = True

  def crossed(self, every_n: int) -> bool:
    """Whether this dispatch passed a multiple of `every_n` steps."""
    return every_n > 0 and self.step // every_n > (self.step - self.num_steps) // every_n


class Hook:
  """Base class; override what you need. All methods are no-ops by default."""

  def begin(self) -> None:
    """Before the loop; no state exists yet."""

  def after_create_state(self, state: Any) -> None:
    """The state (train state, or variables in eval/predict) is ready."""

  def before_step(self, ctx: StepContext) -> Sequence[str] | None:
    """Returns the names of step outputs to fetch to the host (e.g. ['loss']), or None."""
    return None

  def after_step(self, ctx: StepContext, values: dict[str, Any]) -> None:
    """`values` holds the requested outputs as numpy; call `ctx.request_stop()` to stop."""

  def end(self, state: Any) -> None:
    """After the loop, also when it stopped early; not after an exception."""


class NanLossDuringTrainingError(RuntimeError):
  """Raised by `NanLossHook` when the training loss is NaN or infinite."""


class LoggingHook(Hook):
  """Logs `step`, `loss` and `examples/sec` every `every_n_steps` steps (and at the end)."""

  def __init__(self, every_n_steps: int = 100):
    self.every_n_steps = every_n_steps
    self._t0 = self._s0 = None

  def begin(self):
    self._t0 = time.perf_counter()
    self._s0 = None

  def before_step(self, ctx):
    if self._s0 is None:
      self._s0 = ctx.step - ctx.num_steps
    return ['loss'] if ctx.crossed(self.every_n_steps) else None

  def after_step(self, ctx, values):
    # `values` also holds what other hooks asked for: act at this hook's own cadence only.
    if 'loss' not in values or not ctx.crossed(self.every_n_steps):
      return
    now = time.perf_counter()
    rate = (ctx.step - self._s0) * ctx.batch_size / max(now - self._t0, 1e-9)
    logger.info('step = %d, loss = %.6g, examples/sec = %.1f', ctx.step, values['loss'], rate)
    self._t0, self._s0 = now, ctx.step


class NanLossHook(Hook):
  """Raises `NanLossDuringTrainingError` naming the step (or stops) if the loss is not finite.

  Checks every `every_n_steps` steps, so a NaN is caught at the log cadence without a device sync
  every step.
  """

  def __init__(self, every_n_steps: int = 100, fail_on_nan_loss: bool = True):
    self.every_n_steps, self.fail_on_nan_loss = every_n_steps, fail_on_nan_loss

  def before_step(self, ctx):
    return ['loss'] if ctx.crossed(self.every_n_steps) else None

  def after_step(self, ctx, values):
    if 'loss' in values and not np.isfinite(values['loss']):
      if self.fail_on_nan_loss:
        raise NanLossDuringTrainingError(
            f'NaN or infinite loss ({values["loss"]}) during training at step {ctx.step}')
      logger.error('NaN loss at step %d; stopping', ctx.step)
      ctx.request_stop()


class StopAtStepHook(Hook):
  """Stops after `num_steps` more steps, or once the global step reaches `last_step`."""

  def __init__(self, num_steps: int | None = None, last_step: int | None = None):
    if (num_steps is None) == (last_step is None):
      raise ValueError('StopAtStepHook needs exactly one of num_steps and last_step')
    self.num_steps, self.last_step = num_steps, last_step
    self._target = last_step

  def after_create_state(self, state):
    if self.num_steps is not None:
      self._target = int(state.step) + self.num_steps

  def after_step(self, ctx, values):
    if self._target is not None and ctx.step >= self._target:
      ctx.request_stop()

  @property
  def target(self) -> int | None:
    return self._target


class StepCounterHook(Hook):
  """Writes `global_step/sec` to a summary writer every `every_n_steps` steps."""

  def __init__(self, writer, every_n_steps: int = 100):
    self.writer, self.every_n_steps = writer, every_n_steps
    self._t = self._s = None

  def before_step(self, ctx):
    if self._t is None:
      self._t, self._s = time.perf_counter(), ctx.step - ctx.num_steps
    return None

  def after_step(self, ctx, values):
    if ctx.crossed(self.every_n_steps):
      now = time.perf_counter()
      self.writer.scalars(ctx.step, {'global_step/sec': (ctx.step - self._s) / max(now - self._t,
                                                                                 1e-9)})
      self._t, self._s = now, ctx.step


class SummarySaverHook(Hook):
  """Writes the training `loss` scalar every `every_n_steps` steps."""

  def __init__(self, writer, every_n_steps: int = 100):
    self.writer, self.every_n_steps = writer, every_n_steps

  def before_step(self, ctx):
    return ['loss'] if ctx.crossed(self.every_n_steps) else None

  def after_step(self, ctx, values):
    if 'loss' in values and ctx.crossed(self.every_n_steps):
      self.writer.scalars(ctx.step, {'loss': values['loss']})


class ProfilerHook(Hook):
  """Captures a `jax.profiler` trace of the steps in `[start_step, start_step + num_steps)`.

  The trace lands in `output_dir` (TensorBoard's profile plugin or Perfetto read it).
  """

  def __init__(self, output_dir: str, start_step: int = 10, num_steps: int = 5):
    self.output_dir, self.start_step, self.num_steps = output_dir, start_step, num_steps
    self._active = False
    self.traced_steps: list[int] = []

  def before_step(self, ctx):
    first = ctx.step - ctx.num_steps + 1
    if not self._active and first >= self.start_step and first < self.start_step + self.num_steps:
      import jax
      os.makedirs(self.output_dir, exist_ok=True)
      jax.profiler.start_trace(self.output_dir)
      self._active = True
    return None

  def after_step(self, ctx, values):
    if self._active:
      self.traced_steps.append(ctx.step)
      if ctx.step >= self.start_step + self.num_steps - 1:
        self._stop()

  def end(self, state):
    self._stop()

  def _stop(self):
    if self._active:
      import jax
      jax.profiler.stop_trace()
      self._active = False


class CheckpointSaverListener:
  """Callbacks around each checkpoint save of `train` (TF's `CheckpointSaverListener`).

  A truthy return from `after_save` stops training.
  """

  def begin(self) -> None:
    pass

  def before_save(self, step: int) -> None:
    pass

  def after_save(self, step: int) -> bool | None:
    return None

  def wants_save(self, ctx: StepContext) -> bool:
    """Whether this listener needs a checkpoint after this dispatch (e.g. to evaluate it)."""
    return False

  def end(self, step: int) -> None:
    pass


__all__ = ['Hook', 'StepContext', 'LoggingHook', 'NanLossHook', 'NanLossDuringTrainingError',
           'StopAtStepHook', 'StepCounterHook', 'SummarySaverHook', 'ProfilerHook',
           'CheckpointSaverListener']
