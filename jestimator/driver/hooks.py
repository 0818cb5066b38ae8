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
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from jestimator.model import summary as summary_lib

logger = logging.getLogger('jestimator')


class StepContext:
  """What a hook sees around one dispatch.

  Attributes:
    mode: the ModeKeys of the loop.
    step: global step after this dispatch (train), or the number of batches run (eval/predict).
    num_steps: steps run by this dispatch.
    batch_size: examples per step.
    total: the step the loop ends at when known in advance (train: `steps` / `max_steps`, or a
      finite in-memory input; eval: `steps` or the number of batches), else None.
  """

  def __init__(self, mode: str, step: int, num_steps: int, batch_size: int,
               total: int | None = None):
    self.mode, self.step, self.num_steps, self.batch_size = mode, step, num_steps, batch_size
    self.total = total
    self.stop_requested = False

  @property
  def is_last(self) -> bool:
    """Whether this dispatch reaches the known end of the loop (`total`); False when unknown."""
    return self.total is not None and self.step >= self.total

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
    """Returns the names of step outputs to fetch to the host (e.g. ['loss']), or None.

    Fetchable names: `loss` (train, evaluate), `update_losses` (train: `{name: loss}` of a
    `train_ops` rule's sub-updates), the names of the model_fn's `summary.scalar`
    calls, the prediction keys (predict), `SUMMARIES` (every summary of the step), and what a
    `LoggingTensorHook` registered. A name the step does not produce is a ValueError that lists
    the ones it does. In train, asking for anything but `loss`, `losses` (`[num_steps]`),
    `update_losses` and `nonfinite` runs the step variant that returns summaries (one extra
    compilation).
    """
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
  """Writes the training `loss` and the model_fn's `jestimator.summary` values every
  `every_n_steps` steps and at the last step when it is known in advance; `every_n_steps` 0 or
  None writes nothing (TF's `save_summary_steps=0`).

  `write(step, values)` is also called by the train loop at the end of a run whose last step was
  not written (a `train()` shorter than `every_n_steps`, or an input that ran out).
  """

  def __init__(self, writer, every_n_steps: int = 100):
    self.writer, self.every_n_steps = writer, every_n_steps
    self.last_written: int | None = None

  def _due(self, ctx) -> bool:
    return bool(self.every_n_steps) and (ctx.crossed(self.every_n_steps) or ctx.is_last)

  def wants_end(self, step: int) -> bool:
    """Whether the loop should `write` its last step (on, and not written yet)."""
    return bool(self.every_n_steps) and self.last_written != step

  def before_step(self, ctx):
    return ['loss', UPDATE_LOSSES, SUMMARIES] if self._due(ctx) else None

  def after_step(self, ctx, values):
    if 'loss' in values and self._due(ctx):
      self.write(ctx.step, values)

  def write(self, step: int, values: dict[str, Any]) -> None:
    summaries = values.get(SUMMARIES) or {}
    self.writer.scalars(step, {'loss': values['loss'], **update_loss_scalars(values),
                               **summaries.get('scalars', {})})
    self.writer.histograms(step, summaries.get('histograms', {}))
    self.last_written = step


def update_loss_scalars(values: dict[str, Any]) -> dict[str, Any]:
  """`{'loss/<name>': value}` of a train op's sub-update losses in fetched step outputs; a
  NaN (a custom train op's declared loss that it did not report at the step) is left out."""
  return {f'loss/{k}': v for k, v in sorted((values.get(UPDATE_LOSSES) or {}).items())
          if np.isfinite(v)}


class LoggingTensorHook(Hook):
  """Logs values of the model_fn every N dispatches or seconds (TF's `LoggingTensorHook`).

  Built inside a `model_fn` from values computed there and returned in `training_hooks` /
  `evaluation_hooks` / `prediction_hooks`, as in TF:

    def model_fn(features, labels, mode):
      ...
      acc = jnp.mean((logits > 0) == labels)
      hook = jestimator.hooks.LoggingTensorHook({'acc': acc, 'loss': loss}, every_n_iter=100)
      return EstimatorSpec(mode, loss=loss, ..., training_hooks=[hook])

  The values become outputs of the compiled step, fetched to the host only when the hook is due.
  A value may also be the name of a step output (`'loss'`, a `summary.scalar` name, a prediction
  key); a list of names logs those under their own names.

  Args:
    tensors: `{display name: value or output name}`, or a list of output names.
    every_n_iter: log at the first dispatch of each loop and every `every_n_iter` after it.
    every_n_secs: log at the first dispatch and then when this many seconds have passed.
    formatter: `formatter({name: numpy value}) -> str`; default `'name = value, ...'`.
  """

  def __init__(self, tensors, every_n_iter: int | None = None, every_n_secs: float | None = None,
               formatter=None):
    if (every_n_iter is None) == (every_n_secs is None):
      raise ValueError('LoggingTensorHook needs exactly one of every_n_iter and every_n_secs, got '
                       f'every_n_iter={every_n_iter!r}, every_n_secs={every_n_secs!r}')
    if every_n_iter is not None and (not isinstance(every_n_iter, int) or every_n_iter <= 0):
      raise ValueError(f'LoggingTensorHook every_n_iter must be a positive int, got '
                       f'{every_n_iter!r}')
    if every_n_secs is not None and not every_n_secs > 0:
      raise ValueError(f'LoggingTensorHook every_n_secs must be positive, got {every_n_secs!r}')
    if formatter is not None and not callable(formatter):
      raise TypeError(f'LoggingTensorHook formatter must be callable, got '
                      f'{type(formatter).__name__}')
    items = list(tensors.items()) if isinstance(tensors, Mapping) else [(t, t) for t in tensors]
    if not items:
      raise ValueError('LoggingTensorHook needs at least one tensor')
    collector = summary_lib.active()  # the collector of the model_fn being traced, if any
    index = collector.next_hook_index() if collector is not None else None
    self._fetch: dict[str, str] = {}
    for name, value in items:
      if isinstance(value, str):
        self._fetch[str(name)] = value
        continue
      if collector is None:
        raise ValueError(
            f'LoggingTensorHook tensor {name!r} is a {type(value).__name__}, not a name: values '
            'work only when the hook is built inside a model_fn (from values computed there); '
            'elsewhere name step outputs, e.g. ["loss"]')
      key = f'LoggingTensorHook_{index}/{name}'
      collector.tensors[key] = value
      self._fetch[str(name)] = key
    self.every_n_iter, self.every_n_secs, self.formatter = every_n_iter, every_n_secs, formatter
    self._iter = 0
    self._last_time: float | None = None

  def begin(self):
    self._iter, self._last_time = 0, None

  def _due(self) -> bool:
    if self.every_n_iter is not None:
      return self._iter % self.every_n_iter == 0
    return self._last_time is None or time.monotonic() - self._last_time >= self.every_n_secs

  def before_step(self, ctx):
    return list(self._fetch.values()) if self._due() else None

  def after_step(self, ctx, values):
    due = self._due()
    self._iter += 1
    if not due:
      return
    self._last_time = time.monotonic()
    shown = {name: values[key] for name, key in self._fetch.items()}
    if self.formatter is not None:
      logger.info('%s', self.formatter(shown))
    else:
      logger.info('%s', ', '.join(f'{name} = {value}' for name, value in shown.items()))


#: Requests every summary of the step (`{'scalars', 'histograms', 'tensors'}`) from a hook.
SUMMARIES = 'summaries'
#: The step output of a train op's sub-update losses (`{name: loss}`; see `train_ops`).
UPDATE_LOSSES = 'update_losses'


def fetch_values(outputs: Mapping[str, Any], wanted, to_host,
                 host_values: Mapping[str, Any] | None = None, what: str = 'step'
                 ) -> dict[str, Any]:
  """The requested step outputs as numpy: `{name: value}` for each name in `wanted`.

  Names resolve to a top-level output (`loss`), `SUMMARIES`, a summary scalar, a hook tensor or
  (predict) a key of `host_values`. An unknown name is a ValueError listing the fetchable ones:
  a request is never dropped.
  """
  if not wanted:
    return {}
  host_values = host_values or {}
  summaries = outputs.get(SUMMARIES)
  table: dict[str, Any] = {k: v for k, v in outputs.items() if k != SUMMARIES}
  if summaries is not None:
    table[SUMMARIES] = summaries
    table.update(summaries['scalars'])
    table.update(summaries['tensors'])
  device = {}
  out = {}
  for name in wanted:
    if name in host_values:
      out[name] = host_values[name]
    elif name in table:
      device[name] = table[name]
    else:
      available = sorted(set(table) | set(host_values))
      raise ValueError(f'a hook asked for {name!r}, which the {what} does not produce; '
                       f'fetchable names are {available}')
  out.update(jax.tree.map(np.asarray, to_host(device)))
  return out


class ProfilerHook(Hook):
  """Captures a `jax.profiler` trace of the steps in `[start_step, start_step + num_steps)`.

  The trace lands in `output_dir/plugins/profile/<run>/` and opens in TensorBoard's profile
  plugin (`pip install 'jestimator[profile]'`, then `tensorboard --logdir output_dir`) or
  Perfetto. Each traced dispatch is marked as a step (`jax.profiler.StepTraceAnnotation`), so
  the profiler can tell step times apart.
  """

  def __init__(self, output_dir: str, start_step: int = 10, num_steps: int = 5):
    self.output_dir, self.start_step, self.num_steps = output_dir, start_step, num_steps
    self._active = False
    self._step_mark = None
    self.traced_steps: list[int] = []

  def before_step(self, ctx):
    import jax
    first = ctx.step - ctx.num_steps + 1
    if not self._active and first >= self.start_step and first < self.start_step + self.num_steps:
      os.makedirs(self.output_dir, exist_ok=True)
      jax.profiler.start_trace(self.output_dir)
      self._active = True
    if self._active:
      self._step_mark = jax.profiler.StepTraceAnnotation(ctx.mode, step_num=ctx.step)
      self._step_mark.__enter__()
    return None

  def after_step(self, ctx, values):
    if self._active:
      self._end_step_mark()
      self.traced_steps.append(ctx.step)
      if ctx.step >= self.start_step + self.num_steps - 1:
        self._stop()

  def end(self, state):
    self._stop()

  def _end_step_mark(self):
    if self._step_mark is not None:
      self._step_mark.__exit__(None, None, None)
      self._step_mark = None

  def _stop(self):
    self._end_step_mark()
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
           'LoggingTensorHook', 'CheckpointSaverListener', 'SUMMARIES', 'fetch_values']
