"""The evaluate loop: every example counts exactly once, results written as eval summaries."""
from __future__ import annotations

import logging
from typing import Any

import jax

from jestimator.driver import hooks as hooks_lib
from jestimator.driver import summaries
from jestimator.model import metrics as metrics_lib
from jestimator.model.mode_keys import ModeKeys

logger = logging.getLogger('jestimator')


def evaluate(compiled, store, pipeline, input_fn, steps, hooks, checkpoint_path, eval_dir
             ) -> dict[str, Any]:
  """Evaluates to the end of input (or `steps` batches); see `Estimator.evaluate`.

  Args:
    compiled, store, pipeline: the Estimator's `CompiledModel`, `StateStore`, `InputPipeline`.
    input_fn, steps, hooks, checkpoint_path: as `Estimator.evaluate` (checked by it).
    eval_dir: where the results are written as summaries and appended as JSON records.
  """
  strategy = compiled.strategy
  source = pipeline.open(input_fn, ModeKeys.EVAL)
  try:
    batch = source.first('evaluation')
    variables, global_step, path = store.variables_for(batch.features, batch.labels,
                                                       ModeKeys.EVAL, checkpoint_path)
    traced = compiled.traced(ModeKeys.EVAL, variables, batch.features, batch.labels)
    eval_step = compiled.eval_step()
    all_hooks = list(hooks) + list(traced.spec.evaluation_hooks)
    for h in all_hooks:
      h.begin()
    for h in all_hooks:
      h.after_create_state(variables)
    acc = None
    compiled_size = pipeline.padded_size(batch.size)
    count = 0
    while batch is not None:
      pad_to = pipeline.pad_target(batch.size, compiled_size, traced.padding_aware)
      f, l, m = pipeline.place_padded(batch, pad_to, traced.padding_aware)
      if acc is None:
        acc = compiled.zero_metric_states(variables, f, l, m)
      count += 1
      ctx = hooks_lib.StepContext(ModeKeys.EVAL, count, 1, batch.size)
      for h in all_hooks:
        h.before_step(ctx)
      acc = eval_step(variables, acc, f, l, m)
      if strategy.sync_every and count % strategy.sync_every == 0:
        jax.block_until_ready(acc)
      for h in all_hooks:
        h.after_step(ctx, {})
      if ctx.stop_requested or (steps is not None and count >= steps):
        break
      batch = next(source, None)
    results = metrics_lib.compute(strategy.to_host(acc))
    results['global_step'] = int(global_step)
    for h in all_hooks:
      h.end(variables)
  finally:
    source.close()
  _write(eval_dir, global_step, results, path)
  return results


def _write(eval_dir: str, global_step: int, results: dict, path: str | None) -> None:
  writer = summaries.SummaryWriter(eval_dir)
  writer.scalars(global_step, {k: v for k, v in results.items() if k != 'global_step'})
  if path:
    writer.text(global_step, 'checkpoint_path', path)
  writer.close()
  summaries.append_eval_results(eval_dir, global_step, results, path)
  logger.info('Saving dict for global step %d: %s', global_step,
              ', '.join(f'{k} = {v:.6g}' if isinstance(v, float) else f'{k} = {v}'
                        for k, v in sorted(results.items())))
