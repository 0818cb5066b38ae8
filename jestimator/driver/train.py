"""The train loop: batches from the `InputPipeline`, steps from the `CompiledModel`, state from
and to the `StateStore`; hooks, listeners and summaries at their cadence."""
from __future__ import annotations

import collections
import logging
import time

import jax
import numpy as np

from jestimator.driver import hooks as hooks_lib
from jestimator.driver import progress
from jestimator.driver import summaries
from jestimator.driver.agreement import any_process, gather_ints
from jestimator.driver.nan_check import NanCheck
from jestimator.driver.strategy import SingleDevice
from jestimator.model.mode_keys import ModeKeys
from jestimator.state import checkpoints

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
  latest = store.verified_latest_step(ckpt)
  meta = ckpt.meta(latest) if latest is not None else {}
  start = latest if latest is not None else 0
  if latest is None and ckpt.unreadable_steps():
    raise ValueError(
        f'model_dir {config.model_dir!r} holds no intact checkpoint, only unreadable step folders '
        f'{ckpt.unreadable_steps()}; training would silently start over: move them out of '
        'model_dir to train from scratch')
  if max_steps is not None and start >= max_steps:
    logger.info('Skipping training since max_steps (%d) has already been reached.', max_steps)
    return
  target = start + steps if steps is not None else max_steps
  source = pipeline.open(input_fn, ModeKeys.TRAIN, meta.get('input_state'))
  if source.endless and target is None:
    source.close()
    raise ValueError('input_fn returned a single (features, labels) batch, which training '
                     'repeats every step (as TF did with tensors): give steps or max_steps, or '
                     'return an iterable of batches that ends')
  lock = None
  ahead = None
  try:
    first = source.first('training')
    ahead = _compile_ahead(compiled, pipeline, config, source, first)
    state = store.train_state(ckpt, first.features, first.labels)
    if ahead is not None:
      ahead.join()  # the first step then finds its program compiled
    lock = _lock(config.model_dir, ckpt, latest)
    ckpt = store.writer()
    try:
      _run(compiled, store, pipeline, config, ckpt, writers.get(config.model_dir), hooks,
           listeners, state, source, first, target)
    finally:
      # Also after an exception (say a NaN loss): every event written so far is kept.
      writers.flush()
  finally:
    if ahead is not None:
      ahead.join()
    source.close()
    ckpt.wait()
    if lock is not None:
      lock.release()


def _lock(model_dir, ckpt, latest):
  """One trainer per model_dir, taken once the input and model are validated (bad input leaves no
  trace) but before any step: it also proves model_dir writable. Process 0 holds it for a
  multi-process run, and all processes fail together when it cannot."""
  lock = error = None
  if jax.process_index() == 0:
    try:
      lock = checkpoints.ModelDirLock(model_dir).acquire()
      if ckpt.latest_step() != latest:
        lock.release()
        raise RuntimeError(f'another trainer saved a checkpoint in {model_dir!r} while this one '
                           'was starting; retry (it will resume from the newest checkpoint)')
    except (RuntimeError, PermissionError) as e:
      error = e
  if jax.process_count() > 1:
    (failed,) = any_process(error is not None)
    if failed and error is None:
      raise RuntimeError(f'process 0 could not lock model_dir {model_dir!r} (see its log)')
  if error is not None:
    raise error
  return lock


def _plan(traced, strategy, first, has_collections: bool) -> tuple[bool, int]:
  """`(pad, compiled_size)`: whether short batches run padded, and the size steps compile for.

  A padding-aware loss lets a short (final) batch run padded, with zero weight on the padding,
  by the program already compiled for the first batch's size. Mutable collections (BatchNorm
  statistics) would see the padded rows, so models with them run short batches unpadded. The
  size is the first batch's, not rounded up: a batch that does not divide still fails loudly.
  """
  pad = strategy.pads_train_batches and traced.padding_aware and not has_collections
  return pad, first.size


def _compile_ahead(compiled, pipeline, config, source, first):
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
  mask = jax.ShapeDtypeStruct((size,), np.float32)
  resident = _resident(pipeline, config, source, pad)
  if resident is not None:
    whole = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=placed),
                         resident)
    return compiled.compile_ahead('gather_train_step', compiled.gather_train_step(), abstract,
                                  *whole, jax.ShapeDtypeStruct((size,), np.int32), mask,
                                  jax.ShapeDtypeStruct((), np.bool_, sharding=placed))
  if full == 1:
    args = (spec(first.features), spec(first.labels))
    if pad:
      args += (mask,)
    return compiled.compile_ahead('train_step', compiled.train_step(), abstract, *args)
  return compiled.compile_ahead('train_loop', compiled.train_loop(), abstract,
                                spec(first.features, (full,)),
                                spec(first.labels, (full,)),
                                jax.ShapeDtypeStruct((), np.int32))


def _resident(pipeline, config, source, pad: bool):
  """The in-memory input's whole host arrays when steps gather their rows on the device, else None.

  On one device, one step per dispatch, with short batches padded (so every dispatch runs the
  one gathering program): each step then sends only its row numbers, not every feature.
  """
  if not (pad and config.steps_per_loop == 1 and jax.process_count() == 1 and
          isinstance(pipeline.strategy, SingleDevice)):
    return None
  return pipeline.resident(source)


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


def _agree(stop: bool, due: bool, group: list, step: int) -> tuple[bool, bool, list]:
  """`(stop, due, group)` agreed over all processes in one collective.

  Stop and save when any process asks. An empty `group` that is not a stop means this process's
  input ended; the next group then runs nowhere (inputs of different lengths end together at the
  first end, as one input's end ends single-process training), nor when the processes' next
  groups differ in shape (a short final batch on one of them).
  """
  ended = not group and not stop
  shape = (len(group), group[0].size) if group else (0, 0)
  table = gather_ints([stop, due, ended, *shape])
  stop, due, ended = (bool(v) for v in table[:, :3].max(axis=0))
  if stop:
    return stop, due, []
  if group and (ended or (table[:, 3:] != table[0, 3:]).any()):
    logger.warning(
        'The inputs of the processes end at different steps (next dispatch per process as '
        '[steps, rows]: %s): all stop at step %d, as at the end of input', table[:, 3:].tolist(),
        step)
    group = []
  return stop, due, group


# Step outputs the lean (default) train step returns; asking for others runs the full variant.
_LEAN_OUTPUTS = frozenset({'loss', 'losses', 'nonfinite'})
# What a model_fn without summaries or hook tensors produces for them.
_NO_SUMMARIES = {'scalars': {}, 'histograms': {}, 'tensors': {}}


def _run(compiled, store, pipeline, config, ckpt, writer, hooks, listeners, state, source, first,
         target):
  traced = compiled.traced(ModeKeys.TRAIN, state.variables, first.features, first.labels)
  all_hooks = list(hooks) + list(traced.spec.training_hooks)
  # A NanLossHook(fail_on_nan_loss=False) of the caller's makes the built-in check stop instead.
  nan_check = NanCheck(config.check_nan_loss, fail=not any(
      isinstance(h, hooks_lib.NanLossHook) and not h.fail_on_nan_loss for h in all_hooks))
  summary_hook = hooks_lib.SummarySaverHook(writer, config.save_summary_steps)
  all_hooks += [progress.ProgressHook(ModeKeys.TRAIN, config.log_step_count_steps,
                                      epoch=source.epoch),
                hooks_lib.StepCounterHook(writer, config.log_step_count_steps), summary_hook]
  strategy = compiled.strategy
  pad, compiled_size = _plan(traced, strategy, first, bool(state.collections))
  resident = _resident(pipeline, config, source, pad)
  seen = None  # the gathering step's sticky non-finite flag
  if resident is not None:
    resident, seen = pipeline.place_whole((resident, np.False_))
    source.rows_only()
  for h in all_hooks:
    h.begin()
  for h in all_hooks:
    h.after_create_state(state)
  for listener in listeners:
    listener.begin()
  step = int(state.step)
  # A batch the strategy cannot split fails here, before the start save touches model_dir: its
  # placement check runs on a zero-width stand-in of the first batch (nothing real is sent).
  compiled.strategy.put_batch(np.empty((first.size, 0), np.float32))
  _save_at_start(store, ckpt, config, state, step, listeners)  # TF saves when training starts
  # The end, when known in advance, for the progress ETA and the last summary (not to stop at).
  total = target if target is not None else (
      step + source.batches_left if source.batches_left is not None else None)
  saved_step, saved_time = step, clock()
  position = None
  pending = collections.deque([first])
  stop = False
  dispatches = 0
  outputs = None
  multi_process = jax.process_count() > 1
  per_loop = config.steps_per_loop
  group = _next_group(source, pending, _group_size(config, step, target))
  if multi_process:
    _, _, group = _agree(False, False, group, step)
  while group:
    ctx = hooks_lib.StepContext(ModeKeys.TRAIN, step + len(group), len(group), group[0].size,
                                total)
    wanted = set()
    for h in all_hooks:
      wanted.update(h.before_step(ctx) or ())
    # The variant with summaries and hook tensors, only when a hook asks for them and the model_fn
    # has any (else it would be the same program compiled twice).
    full = traced.has_outputs and bool(wanted - _LEAN_OUTPUTS)
    position = group[-1].position
    if len(group) == 1 and (per_loop == 1 or group[0].size != compiled_size):
      batch = group[0]
      if resident is not None:
        rows, mask = pipeline.place_rows(batch, max(batch.size, compiled_size))
        state, outputs = compiled.gather_train_step(full)(state, *resident, rows, mask, seen)
        seen = outputs['nonfinite_seen']
      elif pad:
        pad_to = max(batch.size, compiled_size)
        state, outputs = compiled.train_step(full)(state, *pipeline.place_padded(batch, pad_to))
      else:
        state, outputs = compiled.train_step(full)(state, pipeline.place(batch.features),
                                                   pipeline.place(batch.labels))
    else:
      # Always a stack of steps_per_loop batches (the last repeated): one loop program runs any
      # shorter group, training on its first len(group) batches only.
      stack = group + [group[-1]] * (per_loop - len(group))
      state, outputs = compiled.train_loop(full)(state, *pipeline.place_stacked(stack),
                                                 np.int32(len(group)))
    if not traced.has_outputs:
      outputs = dict(outputs, **{hooks_lib.SUMMARIES: _NO_SUMMARIES})
    nan_check.add(step + 1, outputs['nonfinite'], seen)
    step += len(group)
    dispatches += 1
    values = hooks_lib.fetch_values(outputs, wanted, strategy.to_host, what='train step')
    if 'losses' in values:
      values['losses'] = values['losses'][:len(group)]
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
               (config.save_checkpoints_secs and  # 0 is off, as TF's
                clock() - saved_time >= config.save_checkpoints_secs) or any(asked))
    # The next group is read before deciding, so that in a multi-process run the end of one
    # process's input is agreed on together with the other stops.
    stop = stop or (target is not None and step >= target)
    group = [] if stop else _next_group(source, pending, _group_size(config, step, target))
    if multi_process:
      # A hook's stop (early stopping reads eval files), a save by the clock and the end of input
      # are decisions of one process; all must take them at the same step, or the others wait
      # in a collective.
      stop, due, group = _agree(stop, due, group, step)
    if due and step != saved_step:
      if not nan_check.check():  # never checkpoint a state that came from a non-finite step
        break
      stop |= _save(store, ckpt, state, step, position, listeners)
      saved_step, saved_time = step, clock()
      if multi_process and listeners:
        (stop,) = any_process(stop)
    if stop:
      group = []
  finite = nan_check.check()
  if finite and outputs is not None and summary_hook.wants_end(step):
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


def _save_at_start(store, ckpt, config, state, step: int, listeners) -> None:
  """TF's `CheckpointSaverHook.after_create_session`: with periodic checkpoints on, the state
  training starts from is checkpointed (step 0 on a fresh run, so a run can roll back to its
  initial weights) and the listeners hear of it; a stop they ask for here is ignored, as TF does.

  A resumed run restored that very checkpoint: it is not rewritten (TF rewrites it; the content
  is the same), only announced, so listeners hear `after_save(start)` as in TF. The save is
  asynchronous like every other; its input position is None (nothing read yet).
  """
  if not config.saves_checkpoints:
    return
  if ckpt.latest_step() == step:
    for listener in listeners:
      listener.before_save(step)
    for listener in listeners:
      listener.after_save(step)
    return
  _save(store, ckpt, state, step, None, listeners)


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
