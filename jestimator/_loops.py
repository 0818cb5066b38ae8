"""The train, evaluate and predict loops of `Estimator` (host side; steps are compiled once)."""
from __future__ import annotations

import logging
import time

import jax
import numpy as np

from jestimator import _batches
from jestimator import checkpoints as ckpt_lib
from jestimator import hooks as hooks_lib
from jestimator import inputs as inputs_lib
from jestimator import summaries
from jestimator.mode_keys import ModeKeys

logger = logging.getLogger('jestimator')


# -- input --------------------------------------------------------------------------------------
def _source(est, input_fn, mode: str, restore_position: dict | None = None,
            place=None):
  """Calls input_fn and returns an iterator of `((features, labels, size), position)`.

  Batches are numpy, or placed on the device(s) by `place` ahead of use. General input_fns run
  in a background thread (`Prefetcher`); in-memory ones are sliced inline.
  """
  needs_labels = mode != ModeKeys.PREDICT and est._model.takes_labels
  input_fn, in_memory = _in_memory(est, input_fn, mode, needs_labels)
  result = inputs_lib.call_input_fn(input_fn, mode, est._model.params, est._config,
                                    est._strategy.input_context())
  iterator = inputs_lib.iterate(result)
  if restore_position and hasattr(iterator, 'set_state') and hasattr(iterator, 'get_state'):
    try:
      fresh = iterator.get_state()
      iterator.set_state(restore_position)
      if getattr(iterator, 'at_end', lambda: False)():
        # An earlier train() consumed this finite input to its end: this call makes a new pass
        # (as TF re-ran input_fn on every call), so epoch-by-epoch train() loops keep working.
        iterator.set_state(fresh)
      else:
        logger.info('Resuming input at epoch %s, offset %s', restore_position.get('epoch'),
                    restore_position.get('offset'))
    except ValueError:  # another input_fn than the checkpoint's: start it from its beginning
      pass

  if in_memory and isinstance(iterator, inputs_lib.ResumableIterator):
    # Whole arrays were transformed and validated once: batches are ready slices, and slicing
    # costs less than a thread hand-off would.
    def produce_slice(item):
      features, labels = _batches.split(item, mode)
      if mode == ModeKeys.PREDICT:
        labels = None
      size = len(next(iter(features.values()))) if features else len(labels)
      if place is not None:
        features, labels = place(features), place(labels)
      return features, labels, size
    return _batches.Inline(iterator, produce_slice)

  def produce(item):
    features, labels, size = _batches.prepare(item, mode, est._host, needs_labels,
                                              est._model.takes_labels)
    if place is not None:
      features, labels = place(features), place(labels)
    return features, labels, size

  return _batches.Prefetcher(iterator, produce)


def _in_memory(est, input_fn, mode: str, needs_labels: bool):
  """`(input_fn, whether its arrays are transformed and validated already)`.

  For the built-in in-memory inputs the host stage and the checks run once over the whole
  arrays, not once per batch. One transformed copy is kept per mode (the latest input_fn).
  """
  if not isinstance(input_fn, inputs_lib.NumpyInputFn):
    return input_fn, False
  cache = est.__dict__.setdefault('_in_memory_inputs', {})
  key = mode
  if key not in cache or cache[key][0] is not input_fn:
    if input_fn.num_examples == 0:
      return input_fn, False
    labels = None if mode == ModeKeys.PREDICT else input_fn.y
    features, labels, _ = _batches.prepare((input_fn.x, labels), mode, est._host, needs_labels,
                                            est._model.takes_labels)
    cache.pop(key, None)  # free the previous copy before making the next
    cache[key] = (input_fn, input_fn.with_arrays(features, labels))
  return cache[key][1], True


def _first(source, what: str):
  try:
    return next(source)
  except StopIteration:
    raise ValueError(f'input_fn yielded no batches for {what}') from None


# -- train --------------------------------------------------------------------------------------
def train(est, input_fn, hooks, steps, max_steps, listeners):
  config, strategy = est._config, est._strategy
  ckpt = ckpt_lib.Checkpointer(config.model_dir, config.keep_checkpoint_max, read_only=True)
  latest = ckpt.latest_step()
  meta = ckpt.meta(latest) if latest is not None else {}
  start = latest if latest is not None else 0
  if max_steps is not None and start >= max_steps:
    logger.info('Skipping training since max_steps (%d) has already been reached.', max_steps)
    return
  target = start + steps if steps is not None else max_steps
  # Single steps take their batch placed on the device ahead of time, by the prefetch thread.
  place = strategy.put_batch if config.steps_per_loop == 1 else None
  source = _source(est, input_fn, ModeKeys.TRAIN, meta.get('input_state'), place)
  try:
    (features, labels, size), position = _first(source, 'training')
    state = _train_state(est, ckpt, latest, features, labels)
    ckpt = ckpt_lib.Checkpointer(config.model_dir, config.keep_checkpoint_max)
    _train_loop(est, ckpt, state, source, ((features, labels, size), position), target, hooks,
                listeners)
  finally:
    source.close()
    ckpt.wait()


def _train_state(est, ckpt, latest, features, labels):
  strategy = est._strategy
  if est._state is not None and latest is not None and int(est._state.step) == latest:
    return est._state  # this object wrote the latest checkpoint: no reload
  if latest is None:
    return strategy.put_state(est._create_train_state(features, labels))
  abstract = est._abstract_train_state(features, labels)
  variables, train, meta = ckpt.restore(latest, abstract.variables,
                                        {'opt_state': abstract.opt_state, 'rng': abstract.rng})
  est._host.check_checkpoint(meta, ckpt.path(latest))
  variables = dict(variables)
  params = variables.pop('params')
  state = abstract.replace(step=np.int32(meta['global_step']), params=params,
                           collections=variables, opt_state=train['opt_state'], rng=train['rng'])
  logger.info('Restored checkpoint %s', ckpt.path(latest))
  return strategy.put_state(state)


def _next_group(source, pending, k: int):
  """Up to k consecutive batches of one shape; `pending` holds a batch held over."""
  group = []
  while len(group) < k:
    if pending:
      item = pending.pop()
    else:
      try:
        item = next(source)
      except StopIteration:
        break
    if group and item[0][2] != group[0][0][2]:
      pending.append(item)  # a short batch: run it in its own dispatch
      break
    group.append(item)
  return group


def _train_loop(est, ckpt, state, source, first, target, hooks, listeners):
  writer = summaries.SummaryWriter(est._config.model_dir)
  try:
    _run_train_loop(est, ckpt, state, source, first, target, hooks, listeners, writer)
  finally:
    writer.close()  # also after an exception (say a NaN loss): no event-writer thread left behind


def _run_train_loop(est, ckpt, state, source, first, target, hooks, listeners, writer):
  config, strategy = est._config, est._strategy
  spec = est._specs.get(ModeKeys.TRAIN)
  all_hooks = list(hooks) + list(spec.training_hooks if spec else ())
  # A NanLossHook of the caller's (say fail_on_nan_loss=False) replaces the default one.
  if not any(isinstance(h, hooks_lib.NanLossHook) for h in all_hooks):
    all_hooks.append(hooks_lib.NanLossHook(config.log_step_count_steps))
  all_hooks += [
      hooks_lib.LoggingHook(config.log_step_count_steps),
      hooks_lib.StepCounterHook(writer, config.log_step_count_steps),
      hooks_lib.SummarySaverHook(writer, config.save_summary_steps)]
  if 'train_step' not in est._compiled:
    est._compiled['train_step'] = strategy.train_step(est._model)
    est._compiled['train_loop'] = strategy.train_loop(est._model)
  train_step, train_loop = est._compiled['train_step'], est._compiled['train_loop']
  for h in all_hooks:
    h.begin()
  for h in all_hooks:
    h.after_create_state(state)
  for listener in listeners:
    listener.begin()
  step = int(state.step)
  saved_step, saved_time = step, time.monotonic()
  position = None
  pending = [first]
  stop = False
  dispatches = 0
  multi_process = jax.process_count() > 1
  while not stop and (target is None or step < target):
    k = config.steps_per_loop if target is None else min(config.steps_per_loop, target - step)
    group = _next_group(source, pending, k)
    if not group:
      break
    size = group[0][0][2]
    ctx = hooks_lib.StepContext(ModeKeys.TRAIN, step + len(group), len(group), size)
    wanted = set()
    for h in all_hooks:
      wanted.update(h.before_step(ctx) or ())
    if len(group) == 1 and config.steps_per_loop == 1:
      (features, labels, _), position = group[0]
      state, outputs = train_step(state, features, labels)  # placed by the prefetcher
    else:
      position = group[-1][1]
      features = jax.tree.map(lambda *a: np.stack(a), *[g[0][0] for g in group])
      labels = jax.tree.map(lambda *a: np.stack(a), *[g[0][1] for g in group])
      state, outputs = train_loop(state, strategy.put_batch(features, stacked=True),
                                  strategy.put_batch(labels, stacked=True))
    step += len(group)
    dispatches += 1
    values = {k: np.asarray(strategy.to_host(outputs[k])) for k in wanted if k in outputs}
    if strategy.sync_every and dispatches % strategy.sync_every == 0 and not values:
      jax.block_until_ready(outputs['loss'])
    for h in all_hooks:
      h.after_step(ctx, values)
    stop = ctx.stop_requested
    asked = [_wants_save(listener, ctx) for listener in listeners]  # ask each, every dispatch
    due = bool((config.save_checkpoints_steps and ctx.crossed(config.save_checkpoints_steps)) or
               (config.save_checkpoints_secs is not None and
                time.monotonic() - saved_time >= config.save_checkpoints_secs) or any(asked))
    if multi_process:
      # A hook's stop (early stopping reads eval files) and a save by the clock are decisions of
      # one process; all must take them at the same step, or the others wait in a collective.
      stop, due = any_process(stop, due)
    if due and step != saved_step:
      stop |= _save(est, ckpt, state, step, position, listeners)
      saved_step, saved_time = step, time.monotonic()
      if multi_process and listeners:
        (stop,) = any_process(stop)
  if step == 0 and saved_step == 0 and ckpt.latest_step() is None:
    logger.info('Training with estimator made no steps.')
  if step != saved_step or ckpt.latest_step() is None:
    _save(est, ckpt, state, step, position, listeners)
  ckpt.wait()
  est._state = state
  for listener in listeners:
    listener.end(step)
  for h in all_hooks:
    h.end(state)


def _save(est, ckpt, state, step, position, listeners) -> bool:
  for listener in listeners:
    listener.before_save(step)
  host = est._strategy.host_state(state)
  ckpt.save(step, host.variables, {'opt_state': host.opt_state, 'rng': host.rng},
            {'input_state': position, **est._host.checkpoint_record()})
  logger.info('Saving checkpoint for step %d into %s', step, ckpt.path(step))
  stop = False
  if listeners:
    est._state = state  # listeners (train_and_evaluate) evaluate this state without a reload
  for listener in listeners:
    ckpt.wait()  # listeners may read the checkpoint they were told about
    stop |= bool(listener.after_save(step))
  if listeners:
    est._state = None  # the loop moves on: holding this state would keep a second copy alive
  return stop


def _wants_save(listener, ctx) -> bool:
  """A listener with `wants_save(ctx) -> bool` may ask for a checkpoint after this dispatch.

  `train_and_evaluate` uses it for `EvalSpec(every_n_steps=N)`: evaluations need a checkpoint.
  """
  wants = getattr(listener, 'wants_save', None)
  return bool(wants is not None and wants(ctx))


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
