"""The train loop: batches from the `InputPipeline`, steps from the `CompiledModel`, state from
and to the `StateStore`; hooks, listeners and summaries at their cadence."""
from __future__ import annotations

import collections
import logging
import time
from typing import Callable

import jax
import numpy as np

from jestimator.driver import hooks as hooks_lib
from jestimator.driver import progress
from jestimator.driver import memory_plan, step_program, summaries
from jestimator.driver.hook_runner import HookRunner
from jestimator.driver.agreement import Agreement
from jestimator.driver.nan_check import NanCheck
from jestimator.model.mode_keys import ModeKeys
from jestimator.state import checkpoints as ckpt_lib
from jestimator.state.train_state import TrainState

logger = logging.getLogger('jestimator')


def train(compiled, store, pipeline, config, input_fn, hooks, steps, max_steps, listeners,
          writers: summaries.Writers, clock: Callable[[], float] = time.monotonic
          ) -> TrainState | None:
  """Trains until `steps` more steps, `max_steps` in total, a hook's stop, or end of input.

  Args:
    compiled: the `CompiledModel`.
    store: the `StateStore` (restores or creates the state; its `training()` checkpoints save).
    pipeline: the `InputPipeline`.
    config: the `RunConfig`.
    input_fn, hooks, steps, max_steps, listeners: as `Estimator.train` (checked by it).
    writers: the Estimator's open event writers (`summaries.Writers`), flushed at the end.
    clock: seconds, for `save_checkpoints_secs` (`time.monotonic`).

  Returns:
    The final train state (placed; the store keeps it for the next verb), or None when training
    was skipped (`max_steps` reached) or stopped at a non-finite step.
  """
  checkpoints = store.training()
  lock = None
  ahead = None
  source = None
  try:
    latest = checkpoints.start_step
    if latest is None and checkpoints.unreadable_steps():
      raise ValueError(
          f'model_dir {config.model_dir!r} holds no intact checkpoint, only unreadable step '
          f'folders {checkpoints.unreadable_steps()}; training would silently start over: move '
          'them out of model_dir to train from scratch')
    start = latest if latest is not None else 0
    if max_steps is not None and start >= max_steps:
      logger.info('Skipping training since max_steps (%d) has already been reached.', max_steps)
      return None
    target = start + steps if steps is not None else max_steps
    source = pipeline.open(input_fn, ModeKeys.TRAIN, checkpoints.start_meta.get('input_state'))
    if source.endless and target is None:
      raise ValueError('input_fn returned a single (features, labels) batch, which training '
                       'repeats every step (as TF did with tensors): give steps or max_steps, or '
                       'return an iterable of batches that ends')
    first = source.first('training')
    agreement = Agreement.of_this_run()
    program = step_program.choose(compiled, pipeline, config.steps_per_loop, source, first,
                                  agreement)
    # Before the state is created or restored: a state that cannot fit fails here, naming it.
    memory_plan.plan_and_check(compiled, first.features, first.labels, config.device_memory_bytes)
    # Compiles in a thread while the state is created or restored.
    ahead = program.compile_ahead()
    state = checkpoints.train_state(first.features, first.labels)
    if ahead is not None:
      ahead.join()  # the first step then finds its program compiled
    lock = _lock(config.model_dir, checkpoints, latest, agreement)
    checkpoints.start_writing()
    try:
      return _run(program, checkpoints, config, writers.get(config.model_dir), hooks, listeners,
                  state, source, first, target, agreement, clock)
    finally:
      # Also after an exception (say a NaN loss): every event written so far is kept.
      writers.flush()
  finally:
    if ahead is not None:
      ahead.join()
    if source is not None:
      source.close()
    checkpoints.close()
    if lock is not None:
      lock.release()


def _lock(model_dir, checkpoints, latest, agreement: Agreement):
  """One trainer per model_dir, taken once the input and model are validated (bad input leaves no
  trace) but before any step: it also proves model_dir writable. Process 0 holds it for a
  multi-process run, and all processes fail together when it cannot."""
  lock = error = None
  if jax.process_index() == 0:
    try:
      lock = ckpt_lib.ModelDirLock(model_dir).acquire()
      if checkpoints.latest_step() != latest:
        lock.release()
        raise RuntimeError(f'another trainer saved a checkpoint in {model_dir!r} while this one '
                           'was starting; retry (it will resume from the newest checkpoint)')
    except (RuntimeError, PermissionError) as e:
      error = e
  (failed,) = agreement.any(error is not None)
  if failed and error is None:
    raise RuntimeError(f'process 0 could not lock model_dir {model_dir!r} (see its log)')
  if error is not None:
    raise error
  return lock


def _next_group(source, pending: collections.deque, k: int) -> list:
  """Up to k consecutive batches of one shape; `pending` holds a batch held over."""
  group = []
  while len(group) < k:
    batch = pending.popleft() if pending else next(source, None)
    if batch is None:
      break
    if group and batch.size != group[0].size:
      pending.appendleft(batch)  # a short batch: run it in its own dispatch
      break
    group.append(batch)
  return group


def _group_size(config, step: int, target: int | None) -> int:
  """Steps in the next dispatch: `steps_per_loop`, fewer to land exactly on the target."""
  return config.steps_per_loop if target is None else min(config.steps_per_loop, target - step)


def _run(program, checkpoints, config, writer, hooks, listeners, state, source, first, target,
         agreement, clock) -> TrainState | None:
  """The loop: hooks before, run a group, NaN check, hooks after, save, agree, next group.
  Returns the final state, or None after a non-finite step."""
  traced = program.traced
  runner = HookRunner([*hooks, *traced.spec.training_hooks], program.compiled.strategy.to_host,
                      'train step')
  nan_check = NanCheck(config.check_nan_loss, fail=config.fail_on_nan_loss)
  summary_hook = hooks_lib.SummarySaverHook(writer, config.save_summary_steps)
  runner.add(progress.ProgressHook(ModeKeys.TRAIN, config.log_step_count_steps,
                                    epoch=source.epoch),
             hooks_lib.StepCounterHook(writer, config.log_step_count_steps), summary_hook)
  runner.begin(state)
  for listener in listeners:
    listener.begin()
  step = int(state.step)
  # A batch the strategy cannot split fails here, before the start save touches model_dir: its
  # placement check runs on a zero-width stand-in of the first batch (nothing real is sent).
  program.compiled.strategy.put_batch(np.empty((first.size, 0), np.float32))
  _save_at_start(checkpoints, config, state, step, listeners)  # TF saves when training starts
  # The end, when known in advance, for the progress ETA and the last summary (not to stop at).
  total = target if target is not None else (
      step + source.batches_left if source.batches_left is not None else None)
  saved_step, saved_time = step, clock()
  position = None
  pending = collections.deque([first])
  stop = False
  outputs = None
  group = _next_group(source, pending, _group_size(config, step, target))
  _, _, group = agreement.next_group(False, False, group, step)
  while group:
    ctx = hooks_lib.StepContext(ModeKeys.TRAIN, step + len(group), len(group), group[0].size,
                                total)
    wanted = runner.before_step(ctx)
    position = group[-1].position
    state, outputs = program.run(state, group, wanted)
    nan_check.add(step + 1, outputs['nonfinite'], program.nonfinite_seen)
    step += len(group)
    values = runner.fetch(outputs, wanted)
    if 'losses' in values:
      values['losses'] = values['losses'][:len(group)]
    synced = bool(values) or program.sync_due(outputs)
    if (synced or nan_check.overdue) and not nan_check.check():
      break  # a non-finite step and RunConfig(fail_on_nan_loss=False): stop, saving nothing
    runner.after_step(ctx, values)
    stop = ctx.stop_requested
    asked = [listener.wants_save(ctx) for listener in listeners]  # ask each, every dispatch
    due = bool((config.save_checkpoints_steps and ctx.crossed(config.save_checkpoints_steps)) or
               (config.save_checkpoints_secs and  # 0 is off, as TF's
                clock() - saved_time >= config.save_checkpoints_secs) or any(asked))
    # The next group is read before deciding, so that in a multi-process run the end of one
    # process's input is agreed on together with the other stops.
    stop = stop or (target is not None and step >= target)
    group = [] if stop else _next_group(source, pending, _group_size(config, step, target))
    # A hook's stop (early stopping reads eval files), a save by the clock and the end of input
    # are decisions of one process; all must take them at the same step, or the others wait in
    # a collective.
    stop, due, group = agreement.next_group(stop, due, group, step)
    if due and step != saved_step:
      if not nan_check.check():  # never checkpoint a state that came from a non-finite step
        break
      stop |= _save(checkpoints, state, step, position, listeners)
      saved_step, saved_time = step, clock()
      if listeners:
        (stop,) = agreement.any(stop)
    if stop:
      group = []
  finite = nan_check.check()
  if finite and outputs is not None and summary_hook.wants_end(step):
    # A train() shorter than save_summary_steps (or an input that ran out) still writes its end.
    summary_hook.write(step, runner.fetch(outputs, ['loss']))
  if step == 0 and saved_step == 0 and checkpoints.latest_step() is None:
    logger.info('Training with estimator made no steps.')
  if finite and (step != saved_step or checkpoints.latest_step() is None):
    _save(checkpoints, state, step, position, listeners)
  checkpoints.wait()
  for listener in listeners:
    listener.end(step)
  runner.end(state)
  return state if finite else None


def _save_at_start(checkpoints, config, state, step: int, listeners) -> None:
  """TF's `CheckpointSaverHook.after_create_session`: with periodic checkpoints on, the state
  training starts from is checkpointed (step 0 on a fresh run, so a run can roll back to its
  initial weights) and the listeners hear of it; a stop they ask for here is ignored, as TF does.

  A resumed run restored that very checkpoint: it is not rewritten (TF rewrites it; the content
  is the same), only announced, so listeners hear `after_save(start)` as in TF. The save is
  asynchronous like every other; its input position is None (nothing read yet).
  """
  if not config.saves_checkpoints:
    return
  if checkpoints.latest_step() == step:
    for listener in listeners:
      listener.before_save(step)
    for listener in listeners:
      listener.after_save(step)
    return
  _save(checkpoints, state, step, None, listeners)


def _save(checkpoints, state, step, position, listeners) -> bool:
  """Saves a checkpoint and runs the listeners; True when one of them asks to stop.

  A listener that evaluates (train_and_evaluate) gets this state from the store without a
  reload: the store serves the state of its latest save while this loop still holds it.
  """
  for listener in listeners:
    listener.before_save(step)
  checkpoints.save(state, step, position)
  stop = False
  for listener in listeners:
    checkpoints.wait()  # listeners may read the checkpoint they were told about
    stop |= bool(listener.after_save(step))
  return stop
