"""The train loop: batches from the `InputPipeline`, steps from the `CompiledModel`, state from
and to the `StateStore`; hooks, listeners and summaries at their cadence."""
from __future__ import annotations

import logging
import time

import jax

from jestimator.driver import hooks as hooks_lib
from jestimator.driver import progress
from jestimator.driver import summaries
from jestimator.driver.agreement import any_process
from jestimator.driver.nan_check import NanCheck
from jestimator.model.mode_keys import ModeKeys

logger = logging.getLogger('jestimator')

#: The clock `save_checkpoints_secs` is measured with.
clock = time.monotonic


def train(compiled, store, pipeline, config, input_fn, hooks, steps, max_steps, listeners,
          writers: summaries.Writers) -> None:
  """Trains until `steps` more steps, `max_steps` in total, a hook's stop, or end of input.

  Args:
    compiled: the `CompiledModel`.
    store: the `StateStore` (restores or creates the state, saves checkpoints).
    pipeline: the `InputPipeline`.
    config: the `RunConfig`.
    input_fn, hooks, steps, max_steps, listeners: as `Estimator.train` (checked by it).
    writers: the Estimator's open event writers (`summaries.Writers`), flushed at the end.
  """
  ckpt = store.reader()
  latest = ckpt.latest_step()
  meta = ckpt.meta(latest) if latest is not None else {}
  start = latest if latest is not None else 0
  if max_steps is not None and start >= max_steps:
    logger.info('Skipping training since max_steps (%d) has already been reached.', max_steps)
    return
  target = start + steps if steps is not None else max_steps
  source = pipeline.open(input_fn, ModeKeys.TRAIN, meta.get('input_state'))
  try:
    first = source.first('training')
    state = store.train_state(ckpt, first.features, first.labels)
    ckpt = store.writer()
    try:
      _run(compiled, store, pipeline, config, ckpt, writers.get(config.model_dir), hooks,
           listeners, state, source, first, target)
    finally:
      # Also after an exception (say a NaN loss): every event written so far is kept.
      writers.flush()
  finally:
    source.close()
    ckpt.wait()


def _next_group(source, pending: list, k: int) -> list:
  """Up to k consecutive batches of one shape; `pending` holds a batch held over."""
  group = []
  while len(group) < k:
    if pending:
      batch = pending.pop()
    else:
      batch = next(source, None)
      if batch is None:
        break
    if group and batch.size != group[0].size:
      pending.append(batch)  # a short batch: run it in its own dispatch
      break
    group.append(batch)
  return group


# Step outputs the lean (default) train step returns; asking for others runs the full variant.
_LEAN_OUTPUTS = frozenset({'loss', 'losses', 'nonfinite'})


def _run(compiled, store, pipeline, config, ckpt, writer, hooks, listeners, state, source, first,
         target):
  spec = compiled.traced(ModeKeys.TRAIN, state.variables, first.features, first.labels).spec
  all_hooks = list(hooks) + list(spec.training_hooks)
  # A NanLossHook(fail_on_nan_loss=False) of the caller's makes the built-in check stop instead.
  nan_check = NanCheck(config.check_nan_loss, fail=not any(
      isinstance(h, hooks_lib.NanLossHook) and not h.fail_on_nan_loss for h in all_hooks))
  summary_hook = hooks_lib.SummarySaverHook(writer, config.save_summary_steps)
  all_hooks += [progress.ProgressHook(ModeKeys.TRAIN, config.log_step_count_steps),
                hooks_lib.StepCounterHook(writer, config.log_step_count_steps), summary_hook]
  for h in all_hooks:
    h.begin()
  for h in all_hooks:
    h.after_create_state(state)
  for listener in listeners:
    listener.begin()
  step = int(state.step)
  # The end, when known in advance, for the progress ETA and the last summary (not to stop at).
  total = target if target is not None else (
      step + source.batches_left if source.batches_left is not None else None)
  saved_step, saved_time = step, clock()
  position = None
  pending = [first]
  stop = False
  dispatches = 0
  outputs = None
  multi_process = jax.process_count() > 1
  strategy = compiled.strategy
  while not stop and (target is None or step < target):
    k = config.steps_per_loop if target is None else min(config.steps_per_loop, target - step)
    group = _next_group(source, pending, k)
    if not group:
      break
    ctx = hooks_lib.StepContext(ModeKeys.TRAIN, step + len(group), len(group), group[0].size,
                                total)
    wanted = set()
    for h in all_hooks:
      wanted.update(h.before_step(ctx) or ())
    full = bool(wanted - _LEAN_OUTPUTS)
    position = group[-1].position
    if len(group) == 1 and config.steps_per_loop == 1:
      batch = group[0]
      state, outputs = compiled.train_step(full)(state, pipeline.place(batch.features),
                                                 pipeline.place(batch.labels))
    else:
      state, outputs = compiled.train_loop(full)(state, *pipeline.place_stacked(group))
    nan_check.add(step + 1, outputs['nonfinite'])
    step += len(group)
    dispatches += 1
    values = hooks_lib.fetch_values(outputs, wanted, strategy.to_host, what='train step')
    synced = bool(values)
    if strategy.sync_every and dispatches % strategy.sync_every == 0 and not values:
      jax.block_until_ready(outputs['loss'])
      synced = True
    if (synced or nan_check.overdue) and not nan_check.check():
      break  # a non-finite step and fail_on_nan_loss=False: stop, saving nothing
    for h in all_hooks:
      h.after_step(ctx, values)
    stop = ctx.stop_requested
    asked = [listener.wants_save(ctx) for listener in listeners]  # ask each, every dispatch
    due = bool((config.save_checkpoints_steps and ctx.crossed(config.save_checkpoints_steps)) or
               (config.save_checkpoints_secs is not None and
                clock() - saved_time >= config.save_checkpoints_secs) or any(asked))
    if multi_process:
      # A hook's stop (early stopping reads eval files) and a save by the clock are decisions of
      # one process; all must take them at the same step, or the others wait in a collective.
      stop, due = any_process(stop, due)
    if due and step != saved_step:
      if not nan_check.check():  # never checkpoint a state that came from a non-finite step
        break
      stop |= _save(store, ckpt, state, step, position, listeners)
      saved_step, saved_time = step, clock()
      if multi_process and listeners:
        (stop,) = any_process(stop)
  finite = nan_check.check()
  if finite and outputs is not None and summary_hook.last_written != step:
    # A train() shorter than save_summary_steps (or an input that ran out) still writes its end.
    summary_hook.write(step, hooks_lib.fetch_values(outputs, ['loss'], strategy.to_host))
  if step == 0 and saved_step == 0 and ckpt.latest_step() is None:
    logger.info('Training with estimator made no steps.')
  if finite and (step != saved_step or ckpt.latest_step() is None):
    _save(store, ckpt, state, step, position, listeners)
  ckpt.wait()
  store.remember(state if finite else None)
  for listener in listeners:
    listener.end(step)
  for h in all_hooks:
    h.end(state)


def _save(store, ckpt, state, step, position, listeners) -> bool:
  """Saves a checkpoint and runs the listeners; True when one of them asks to stop."""
  for listener in listeners:
    listener.before_save(step)
  store.save(ckpt, state, step, position)
  stop = False
  if listeners:
    store.remember(state)  # listeners (train_and_evaluate) evaluate this state without a reload
  for listener in listeners:
    ckpt.wait()  # listeners may read the checkpoint they were told about
    stop |= bool(listener.after_save(step))
  if listeners:
    store.remember(None)  # the loop moves on: holding this state would keep a second copy alive
  return stop
