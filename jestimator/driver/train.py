"""The train loop: batches from the `InputPipeline`, steps from the `CompiledModel`, state from
and to the `StateStore`; hooks, listeners and summaries at their cadence."""
from __future__ import annotations

import collections
import logging
import time

import jax
import numpy as np

from jestimator.driver import hooks as hooks_lib
from jestimator.driver import summaries
from jestimator.driver.agreement import any_process
from jestimator.driver.strategy import SingleDevice
from jestimator.model.mode_keys import ModeKeys

logger = logging.getLogger('jestimator')

#: The clock `save_checkpoints_secs` is measured with.
clock = time.monotonic


def train(compiled, store, pipeline, config, input_fn, hooks, steps, max_steps, listeners
          ) -> None:
  """Trains until `steps` more steps, `max_steps` in total, a hook's stop, or end of input.

  Args:
    compiled: the `CompiledModel`.
    store: the `StateStore` (restores or creates the state, saves checkpoints).
    pipeline: the `InputPipeline`.
    config: the `RunConfig`.
    input_fn, hooks, steps, max_steps, listeners: as `Estimator.train` (checked by it).
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
  ahead = None
  try:
    first = source.first('training')
    ahead = _compile_ahead(compiled, config, first)
    state = store.train_state(ckpt, first.features, first.labels)
    if ahead is not None:
      ahead.join()  # the first step then finds its program compiled
    ckpt = store.writer()
    writer = summaries.SummaryWriter(config.model_dir)
    try:
      _run(compiled, store, pipeline, config, ckpt, writer, hooks, listeners, state, source,
           first, target)
    finally:
      writer.close()  # also after an exception (say a NaN loss): no event-writer thread left
  finally:
    if ahead is not None:
      ahead.join()
    source.close()
    ckpt.wait()


def _plan(traced, strategy, first, has_collections: bool) -> tuple[bool, int]:
  """`(pad, compiled_size)`: whether short batches run padded, and the size steps compile for.

  A padding-aware loss lets a short (final) batch run padded, with zero weight on the padding,
  by the program already compiled for the first batch's size. Mutable collections (BatchNorm
  statistics) would see the padded rows, so models with them run short batches unpadded. The
  size is the first batch's, not rounded up: a batch that does not divide still fails loudly.
  """
  pad = strategy.pads_train_batches and traced.padding_aware and not has_collections
  return pad, first.size


def _compile_ahead(compiled, config, first):
  """Compiles the first dispatch's program in a thread while the state is created or restored.

  The real call then finds the executable in the jitted function's own cache (and in the
  persistent compilation cache). Single device only: there abstract arguments lower exactly as
  the placed ones do; elsewhere a mismatch would cost a second compile.
  Returns the thread, or None.
  """
  strategy = compiled.strategy
  if jax.process_count() > 1 or not isinstance(strategy, SingleDevice):
    return None
  # The state arrives placed (committed to the device), batches as numpy: lower them alike.
  placed = jax.sharding.SingleDeviceSharding(strategy.device)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=placed),
                          compiled.abstract_train_state(first.features, first.labels))
  traced = compiled.traced(ModeKeys.TRAIN, abstract.variables, first.features, first.labels)
  pad, size = _plan(traced, strategy, first, bool(abstract.collections))
  spec = lambda tree, lead=(): jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(lead + np.shape(a), np.asarray(a).dtype), tree)
  full = config.steps_per_loop
  if full == 1:
    args = (spec(first.features), spec(first.labels))
    if pad:
      args += (jax.ShapeDtypeStruct((size,), np.float32),)
    return compiled.compile_ahead('train_step', compiled.train_step(), abstract, *args)
  return compiled.compile_ahead('train_loop', compiled.train_loop(), abstract,
                                spec(first.features, (full,)),
                                spec(first.labels, (full,)),
                                jax.ShapeDtypeStruct((), np.int32))


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


def _all_hooks(hooks, spec, config, writer) -> list:
  all_hooks = list(hooks) + list(spec.training_hooks)
  # A NanLossHook of the caller's (say fail_on_nan_loss=False) replaces the default one.
  if not any(isinstance(h, hooks_lib.NanLossHook) for h in all_hooks):
    all_hooks.append(hooks_lib.NanLossHook(config.log_step_count_steps))
  return all_hooks + [
      hooks_lib.LoggingHook(config.log_step_count_steps),
      hooks_lib.StepCounterHook(writer, config.log_step_count_steps),
      hooks_lib.SummarySaverHook(writer, config.save_summary_steps)]


def _run(compiled, store, pipeline, config, ckpt, writer, hooks, listeners, state, source, first,
         target):
  traced = compiled.traced(ModeKeys.TRAIN, state.variables, first.features, first.labels)
  all_hooks = _all_hooks(hooks, traced.spec, config, writer)
  strategy = compiled.strategy
  pad, compiled_size = _plan(traced, strategy, first, bool(state.collections))
  train_step, train_loop = compiled.train_step(), compiled.train_loop()
  for h in all_hooks:
    h.begin()
  for h in all_hooks:
    h.after_create_state(state)
  for listener in listeners:
    listener.begin()
  step = int(state.step)
  saved_step, saved_time = step, clock()
  position = None
  pending = collections.deque([first])
  stop = False
  dispatches = 0
  multi_process = jax.process_count() > 1
  full = config.steps_per_loop
  while not stop and (target is None or step < target):
    k = full if target is None else min(full, target - step)
    group = _next_group(source, pending, k)
    if not group:
      break
    ctx = hooks_lib.StepContext(ModeKeys.TRAIN, step + len(group), len(group), group[0].size)
    wanted = set()
    for h in all_hooks:
      wanted.update(h.before_step(ctx) or ())
    position = group[-1].position
    if len(group) == 1 and (full == 1 or group[0].size != compiled_size):
      batch = group[0]
      if pad:
        pad_to = max(batch.size, compiled_size)
        state, outputs = train_step(state, *pipeline.place_padded(batch, pad_to))
      else:
        state, outputs = train_step(state, pipeline.place(batch.features),
                                    pipeline.place(batch.labels))
    else:
      # Always a stack of steps_per_loop batches (the last repeated): one loop program runs any
      # shorter group, training on its first len(group) batches only.
      stack = group + [group[-1]] * (full - len(group))
      state, outputs = train_loop(state, *pipeline.place_stacked(stack),
                                  np.int32(len(group)))
    step += len(group)
    dispatches += 1
    values = {k: np.asarray(strategy.to_host(outputs[k])) for k in wanted if k in outputs}
    if 'losses' in values:
      values['losses'] = values['losses'][:len(group)]
    if strategy.sync_every and dispatches % strategy.sync_every == 0 and not values:
      jax.block_until_ready(outputs['loss'])
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
      stop |= _save(store, ckpt, state, step, position, listeners)
      saved_step, saved_time = step, clock()
      if multi_process and listeners:
        (stop,) = any_process(stop)
  if step == 0 and saved_step == 0 and ckpt.latest_step() is None:
    logger.info('Training with estimator made no steps.')
  if step != saved_step or ckpt.latest_step() is None:
    _save(store, ckpt, state, step, position, listeners)
  ckpt.wait()
  store.remember(state)
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
