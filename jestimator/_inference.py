"""The evaluate and predict loops of `Estimator`."""
from __future__ import annotations

import functools
import logging
from typing import Any, Iterator, Mapping

import jax
import numpy as np

from jestimator import _batches
from jestimator import checkpoints as ckpt_lib
from jestimator import hooks as hooks_lib
from jestimator import metrics as metrics_lib
from jestimator import strategy as strategy_lib
from jestimator import summaries
from jestimator._loops import _first, _source
from jestimator.mode_keys import ModeKeys

logger = logging.getLogger('jestimator')


def variables_for(est, features, labels, mode: str, checkpoint_path: str | None):
  """`(placed variables, global_step, checkpoint path or None)` for evaluation / prediction."""
  strategy = est._strategy
  if checkpoint_path is not None:
    ckpt = ckpt_lib.Checkpointer(_dir_of(checkpoint_path), read_only=True)
    step = ckpt_lib.step_from_path(checkpoint_path)
    if step not in ckpt.all_steps():
      raise ValueError(f'checkpoint_path {checkpoint_path!r} is not a complete checkpoint')
  else:
    ckpt = ckpt_lib.Checkpointer(est.model_dir, read_only=True)
    step = ckpt.latest_step()
  if step is None:
    logger.info('Could not find trained model in model_dir: %s, running with fresh '
                'initialization.', est.model_dir)
    if est._warm_start is not None:
      state = est._create_train_state(features, labels)
      return strategy.put_state(state.variables), 0, None
    return strategy.put_state(est._init_variables(features, labels, mode)), 0, None
  state = est._state
  if checkpoint_path is None and state is not None and int(state.step) == step:
    return state.variables, step, ckpt.path(step)
  cache = est.__dict__.setdefault('_restored', {})
  key = (ckpt.path(step), mode)
  if key not in cache:
    abstract = jax.eval_shape(lambda: est._model.init(jax.random.PRNGKey(0), features, labels,
                                                      mode))
    variables, _, meta = ckpt.restore(step, abstract)
    est._host.check_checkpoint(meta, ckpt.path(step))
    # Keep only the newest checkpoint asked for, but per mode, so that alternating evaluate()
    # and predict() calls do not reload it from disk every time.
    for old in [k for k in cache if k[0] != key[0]]:
      del cache[old]
    cache[key] = strategy.put_state(variables)
  return cache[key], step, ckpt.path(step)


def _dir_of(checkpoint_path: str) -> str:
  import os
  return os.path.dirname(os.path.abspath(checkpoint_path))


def _compiled(est, name: str, build):
  if name not in est._compiled:
    est._compiled[name] = build(est._model)
  return est._compiled[name]


def _signature(tree) -> tuple:
  return tuple((str(p), a.shape, str(a.dtype)) for p, a in
               jax.tree_util.tree_flatten_with_path(tree)[0])


def evaluate(est, input_fn, steps, hooks, checkpoint_path, name) -> dict[str, Any]:
  strategy = est._strategy
  source = _source(est, input_fn, ModeKeys.EVAL)
  try:
    (features, labels, size), _ = _first(source, 'evaluation')
    variables, global_step, path = variables_for(est, features, labels, ModeKeys.EVAL,
                                                 checkpoint_path)
    spec = est._spec(ModeKeys.EVAL, variables, features, labels)
    eval_step = _compiled(est, 'eval_step', strategy.eval_step)
    all_hooks = list(hooks) + list(spec.evaluation_hooks)
    for h in all_hooks:
      h.begin()
    for h in all_hooks:
      h.after_create_state(variables)
    acc = None
    compiled_size = _round_up(size, strategy.batch_multiple)
    batch = 0
    item = ((features, labels, size), None)
    while item is not None:
      (features, labels, n), _ = item
      aware = est._model.padding_aware
      pad_to = compiled_size if (n < compiled_size and aware) else (
          _round_up(n, strategy.batch_multiple))
      whole = None
      if pad_to != n and not aware:
        # Padding would dilute a loss that averages over the batch: run it whole if we can.
        whole = strategy.put_unsharded((features, labels, np.ones(n, np.float32)))
      if whole is not None:
        f, l, m = whole
      else:
        (features, labels), mask = _batches.pad_rows((features, labels), n, pad_to)
        f, l, m = (strategy.put_batch(features), strategy.put_batch(labels),
                   strategy.put_batch(mask))
      if acc is None:
        acc = _zero_states(est, variables, f, l, m)
      batch += 1
      ctx = hooks_lib.StepContext(ModeKeys.EVAL, batch, 1, n)
      for h in all_hooks:
        h.before_step(ctx)
      acc = eval_step(variables, acc, f, l, m)
      if strategy.sync_every and batch % strategy.sync_every == 0:
        jax.block_until_ready(acc)
      for h in all_hooks:
        h.after_step(ctx, {})
      if ctx.stop_requested or (steps is not None and batch >= steps):
        break
      item = next(source, None)
    results = metrics_lib.compute(strategy.to_host(acc))
    results['global_step'] = int(global_step)
    for h in all_hooks:
      h.end(variables)
  finally:
    source.close()
  _write_eval(est, name, global_step, results, path)
  return results


def _zero_states(est, variables, features, labels, mask):
  key = _signature((features, labels, mask))
  if key not in est._zero_states:
    step = _steps_eval(est)
    shapes = jax.eval_shape(step, variables, features, labels, mask)
    est._zero_states[key] = strategy_lib.zeros_like_states(shapes)
  return est._zero_states[key]


def _steps_eval(est):
  from jestimator import steps as steps_lib
  if 'eval_shape_step' not in est._compiled:
    est._compiled['eval_shape_step'] = steps_lib.make_eval_step(est._model)
  return est._compiled['eval_shape_step']


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _write_eval(est, name, global_step, results, path):
  eval_dir = est.eval_dir(name)
  writer = summaries.SummaryWriter(eval_dir)
  writer.scalars(global_step, {k: v for k, v in results.items() if k != 'global_step'})
  if path:
    writer.text(global_step, 'checkpoint_path', path)
  writer.close()
  summaries.append_eval_results(eval_dir, global_step, results, path)
  logger.info('Saving dict for global step %d: %s', global_step,
              ', '.join(f'{k} = {v:.6g}' if isinstance(v, float) else f'{k} = {v}'
                        for k, v in sorted(results.items())))


def predict(est, input_fn, predict_keys, hooks, checkpoint_path, yield_single_examples
            ) -> Iterator[Any]:
  strategy = est._strategy
  source = _source(est, input_fn, ModeKeys.PREDICT)
  try:
    (features, _, size), _ = _first(source, 'prediction')
    variables, _, _ = variables_for(est, features, None, ModeKeys.PREDICT, checkpoint_path)
    spec = est._spec(ModeKeys.PREDICT, variables, features, None)
    predict_step = _compiled(est, 'predict_step', strategy.predict_step)
    all_hooks = list(hooks) + list(spec.prediction_hooks)
    for h in all_hooks:
      h.begin()
    for h in all_hooks:
      h.after_create_state(variables)
    compiled_size = _round_up(size, strategy.batch_multiple)
    item = ((features, None, size), None)
    batch = 0
    pending = None
    # Without hooks one batch stays in flight: the device computes batch i+1 while the host
    # converts batch i. Hooks see each step's before_step and after_step in order instead.
    in_flight = not all_hooks
    while item is not None or pending is not None:
      dispatched = None
      if item is not None:
        (features, _, n), _ = item
        (features,), mask = _batches.pad_rows(
            (features,), n, max(compiled_size, _round_up(n, strategy.batch_multiple)))
        batch += 1
        ctx = hooks_lib.StepContext(ModeKeys.PREDICT, batch, 1, n)
        for h in all_hooks:
          h.before_step(ctx)
        out = predict_step(variables, strategy.put_batch(features), strategy.put_batch(mask))
        dispatched = (ctx, out, n, len(mask))
        item = next(source, None)
        if not in_flight:
          pending, dispatched = dispatched, None
      if pending is not None:
        ctx, out, n, padded = pending
        out = jax.tree.map(lambda a: np.asarray(a)[:n],
                           _check_batch_dims(strategy.to_host(out), padded))
        out = _finish_predictions(out, spec.string_outputs, predict_keys)
        for h in all_hooks:
          h.after_step(ctx, {})
        if yield_single_examples:
          yield from _split_rows(out, n)
        else:
          yield out
        if ctx.stop_requested:
          break
      pending = dispatched
    for h in all_hooks:
      h.end(variables)
  finally:
    source.close()


def _check_batch_dims(out, size: int):
  """Every prediction needs the batch dimension first (to split rows and drop padding)."""
  for path, a in jax.tree_util.tree_flatten_with_path(out)[0]:
    shape = np.shape(a)
    if not shape or shape[0] != size:
      name = 'predictions' + jax.tree_util.keystr(path)
      raise ValueError(f'{name} has shape {shape}, but every prediction needs the batch '
                       f'dimension ({size}) first; predictions are split into rows')
  return out


def _finish_predictions(out, string_outputs, predict_keys):
  if isinstance(out, Mapping):
    out = dict(out)
    for key, (ids_key, vocab) in (string_outputs or {}).items():
      if ids_key in out:
        out[key] = lookup_strings(out[ids_key], vocab)
  if predict_keys is not None:
    if not isinstance(out, Mapping):
      raise ValueError('predict_keys given but the model_fn returned predictions that are not a '
                       'dict')
    missing = [k for k in predict_keys if k not in out]
    if missing:
      raise ValueError(f'predict_keys {missing} are not among the predictions {sorted(out)}')
    out = {k: out[k] for k in predict_keys}
  return out


def lookup_strings(ids: np.ndarray, vocabulary) -> np.ndarray:
  """`vocabulary[ids]` as an object array of bytes (TF's string outputs)."""
  table = _string_table(tuple(vocabulary))
  ids = np.asarray(ids)
  return table[np.where((ids >= 0) & (ids < len(vocabulary)), ids, len(vocabulary))]


@functools.lru_cache(maxsize=64)
def _string_table(vocabulary: tuple[str, ...]) -> np.ndarray:
  """The vocabulary as bytes plus b'' for out-of-range ids, built once per vocabulary."""
  table = np.array([w.encode() for w in vocabulary] + [b''], dtype=object)
  table.setflags(write=False)
  return table


def _split_rows(out, n: int):
  if isinstance(out, Mapping):
    for i in range(n):
      yield {k: v[i] for k, v in out.items()}
  else:
    for i in range(n):
      yield out[i]
