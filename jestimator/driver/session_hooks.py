"""TF's `SessionRunHook` protocol on jestimator's `Hook`, and the TF hooks that need it.

`SessionRunHook` adapts `before_run(run_context) -> SessionRunArgs` / `after_run(run_context,
run_values)` onto `Hook.before_step` / `after_step`, so a TF hook ports with small edits:
fetches are the *names* of step outputs (`'loss'`, a `summary.scalar` name, a prediction key, a
`LoggingTensorHook` value; `'global_step'` gives the global step), since a compiled step has no
graph to fetch tensors from. `run_context.request_stop()` stops the loop as in TF;
`after_create_session(session, coord)` receives the state (there is no session or coordinator).

Also here, with TF's semantics: `SecondOrStepTimer`, `NanTensorHook`, `FinalOpsHook`; and
`CheckpointSaverHook`, which raises an error that says what to use instead.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from jestimator.driver import hooks as hooks_lib

logger = logging.getLogger('jestimator')

GLOBAL_STEP = 'global_step'


class SessionRunArgs(NamedTuple):
  """What `before_run` asks for: `fetches` (a name, or a list / dict of names, nested)."""
  fetches: Any
  feed_dict: Any = None
  options: Any = None


class SessionRunValues(NamedTuple):
  """What `after_run` receives: `results` in the structure of the fetches, as numpy."""
  results: Any
  options: Any = None
  run_metadata: Any = None


class SessionRunContext:
  """TF's `SessionRunContext` over one dispatch of the loop."""

  def __init__(self, original_args: SessionRunArgs | None, step_context: hooks_lib.StepContext):
    self.original_args, self._ctx = original_args, step_context
    self.session = None

  @property
  def stop_requested(self) -> bool:
    return self._ctx.stop_requested

  @property
  def global_step(self) -> int:
    """The global step after this dispatch (TF hooks fetch it; here it is known)."""
    return self._ctx.step

  def request_stop(self) -> None:
    """Ends the loop after this dispatch, as TF's."""
    self._ctx.request_stop()


def _names(fetches: Any, where: str) -> list[str]:
  if fetches is None:
    return []
  if isinstance(fetches, str):
    return [fetches]
  if isinstance(fetches, Mapping):
    return [n for v in fetches.values() for n in _names(v, where)]
  if isinstance(fetches, (list, tuple)):
    return [n for v in fetches for n in _names(v, where)]
  raise TypeError(f'{where}: fetches must be names of step outputs (str, or lists / dicts of '
                  f'them), got a {type(fetches).__name__}; a value computed in the model_fn is '
                  'fetched by building a LoggingTensorHook with it there and naming it')


def _structure(fetches: Any, values: Mapping[str, Any], step: int) -> Any:
  if fetches is None:
    return None
  if isinstance(fetches, str):
    return np.asarray(step) if fetches == GLOBAL_STEP else values[fetches]
  if isinstance(fetches, Mapping):
    return {k: _structure(v, values, step) for k, v in fetches.items()}
  return type(fetches)(_structure(v, values, step) for v in fetches)


class SessionRunHook(hooks_lib.Hook):
  """TF's `SessionRunHook`: override `begin`, `after_create_session`, `before_run`, `after_run`,
  `end` (not `before_step` / `after_step`, which adapt them)."""

  def after_create_session(self, session: Any, coord: Any) -> None:
    """The state is ready (`session` is the state; there is no coordinator)."""

  def before_run(self, run_context: SessionRunContext) -> SessionRunArgs | None:
    """Returns `SessionRunArgs(fetches)` naming the step outputs to fetch, or None."""
    return None

  def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
    """`run_values.results` holds the fetched values in the structure of the fetches."""

  # ---------------------------------------------------------------- the adapter onto Hook
  def after_create_state(self, state: Any) -> None:
    self.after_create_session(state, None)

  def before_step(self, ctx: hooks_lib.StepContext):
    where = f'{type(self).__name__}.before_run'
    args = self.before_run(SessionRunContext(None, ctx))
    if args is not None and not isinstance(args, SessionRunArgs):
      raise TypeError(f'{where} must return SessionRunArgs or None, got {type(args).__name__}')
    if args is not None and args.feed_dict:
      raise ValueError(f'{where}: feed_dict is not supported (a compiled step has no '
                       'placeholders); pass values through the input_fn or params')
    self._pending_args = args
    names = [n for n in _names(args.fetches if args else None, where) if n != GLOBAL_STEP]
    return sorted(set(names)) or None

  def after_step(self, ctx: hooks_lib.StepContext, values: dict[str, Any]) -> None:
    args = getattr(self, '_pending_args', None)
    results = _structure(args.fetches, values, ctx.step) if args is not None else None
    self.after_run(SessionRunContext(args, ctx), SessionRunValues(results))


class SecondOrStepTimer:
  """TF's `SecondOrStepTimer`: triggers every `every_secs` seconds or every `every_steps` steps.

  `clock` (not TF's): the seconds `every_secs` is measured in (`time.time`, as TF's).
  """

  def __init__(self, every_secs: float | None = None, every_steps: int | None = None,
               clock: Callable[[], float] = time.time):
    self.reset()
    self._clock = clock
    self._every_secs, self._every_steps = every_secs, every_steps
    if every_secs is None and every_steps is None:
      raise ValueError('Either every_secs or every_steps should be provided.')
    if every_secs is not None and every_steps is not None:
      raise ValueError('Can not provide both every_secs and every_steps.')

  def reset(self) -> None:
    self._last_triggered_step: int | None = None
    self._last_triggered_time: float | None = None

  def should_trigger_for_step(self, step: int) -> bool:
    """True on the first call, then when `every_secs` passed or `every_steps` steps were made
    since the last trigger; never twice for the same step."""
    if self._last_triggered_step is None:
      return True
    if self._last_triggered_step == step:
      return False
    if (self._every_secs is not None and
        self._clock() >= self._last_triggered_time + self._every_secs):
      return True
    return self._every_steps is not None and step >= self._last_triggered_step + self._every_steps

  def update_last_triggered_step(self, step: int) -> tuple[float | None, int | None]:
    """Records a trigger at `step`; returns `(elapsed_secs, elapsed_steps)` since the last one
    (`(None, None)` the first time)."""
    now = self._clock()
    if self._last_triggered_time is None:
      elapsed = (None, None)
    else:
      elapsed = (now - self._last_triggered_time, step - self._last_triggered_step)
    self._last_triggered_time, self._last_triggered_step = now, step
    return elapsed

  def last_triggered_step(self) -> int | None:
    return self._last_triggered_step


class NanTensorHook(hooks_lib.LoggingTensorHook):
  """TF's `NanTensorHook`: checks the loss every step; on NaN raises
  `NanLossDuringTrainingError` (`fail_on_nan_loss=True`) or logs and stops training.

  `loss_tensor` is the name of a step output (`'loss'`) or, built inside a model_fn and returned
  in `training_hooks` as in TF, the loss value itself. Like TF it tests for NaN only; the
  built-in `RunConfig(check_nan_loss=True)` check (on the device, no sync every step) also
  catches infinities and is usually the better choice.
  """

  def __init__(self, loss_tensor: Any = 'loss', fail_on_nan_loss: bool = True):
    super().__init__({'loss': loss_tensor}, every_n_iter=1)
    self.fail_on_nan_loss = fail_on_nan_loss

  def after_step(self, ctx, values):
    loss = values[self._fetch['loss']]
    if np.isnan(loss).any():
      message = f'Model diverged with loss = NaN (step {ctx.step}).'
      logger.error('%s', message)
      if self.fail_on_nan_loss:
        raise hooks_lib.NanLossDuringTrainingError(message)
      ctx.request_stop()


class FinalOpsHook(hooks_lib.LoggingTensorHook):
  """TF's `FinalOpsHook`: the values of `final_ops` after the loop's last step, in
  `final_ops_values` (a value, list or dict, as `final_ops`).

  `final_ops` are step-output names or values built inside a model_fn. When the loop's length is
  known they are fetched at the last step only; otherwise every step (the last one is kept).
  """

  def __init__(self, final_ops: Any, final_ops_feed_dict: Any = None):
    if final_ops_feed_dict:
      raise ValueError('FinalOpsHook: final_ops_feed_dict is not supported (a compiled step has '
                       'no placeholders)')
    self._shape = final_ops
    items = (final_ops if isinstance(final_ops, Mapping) else
             dict(enumerate(final_ops)) if isinstance(final_ops, (list, tuple)) else
             {0: final_ops})
    super().__init__({str(k): v for k, v in items.items()}, every_n_iter=1)
    self._keys = list(items)
    self._final_ops_values = None
    self._last: dict[str, Any] | None = None

  def before_step(self, ctx):
    return list(self._fetch.values()) if ctx.total is None or ctx.is_last else None

  def after_step(self, ctx, values):
    if all(key in values for key in self._fetch.values()):
      self._last = {name: values[key] for name, key in self._fetch.items()}

  def end(self, state):
    if self._last is None:
      return
    got = [self._last[str(k)] for k in self._keys]
    if isinstance(self._shape, Mapping):
      self._final_ops_values = dict(zip(self._keys, got))
    elif isinstance(self._shape, (list, tuple)):
      self._final_ops_values = type(self._shape)(got)
    else:
      self._final_ops_values = got[0]

  @property
  def final_ops_values(self) -> Any:
    return self._final_ops_values


class CheckpointSaverHook(hooks_lib.Hook):
  """Not a hook here: the Estimator saves checkpoints (atomically, with the input position).
  Raises a `TypeError` that says what to use."""

  def __init__(self, *args, **kwargs):
    raise TypeError(
        'CheckpointSaverHook: jestimator saves checkpoints itself; set '
        'RunConfig(save_checkpoints_steps=N) or RunConfig(save_checkpoints_secs=S) and '
        'keep_checkpoint_max, and pass CheckpointSaverListener objects as '
        'Estimator.train(saving_listeners=[...]) to run code around each save')


__all__ = ['CheckpointSaverHook', 'FinalOpsHook', 'NanTensorHook', 'SecondOrStepTimer',
           'SessionRunArgs', 'SessionRunContext', 'SessionRunHook', 'SessionRunValues']
