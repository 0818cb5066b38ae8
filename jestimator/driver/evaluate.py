"""The evaluate loop: every example counts exactly once, results written as eval summaries."""
from __future__ import annotations

import logging
import time
from typing import Any

import jax

from jestimator.driver import hooks as hooks_lib
from jestimator.driver.hook_runner import HookRunner
from jestimator.driver import progress, summaries
from jestimator.model import metrics as metrics_lib
from jestimator.model import summary as summary_lib
from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline.plan import BatchPlan

logger = logging.getLogger('jestimator')


def evaluate(compiled, store, pipeline, input_fn, steps, hooks, checkpoint_path, eval_dir,
             writers: summaries.Writers, log_step_count_steps: int = 100
             ) -> dict[str, Any]:
  """Evaluates to the end of input (or `steps` batches); see `Estimator.evaluate`.

  Args:
    compiled, store, pipeline: the Estimator's `CompiledModel`, `StateStore`, `InputPipeline`.
    input_fn, steps, hooks, checkpoint_path: as `Estimator.evaluate` (checked by it).
    eval_dir: where the results are written as summaries and appended as JSON records.
    writers: the Estimator's open event writers (`summaries.Writers`), flushed at the end.
    log_step_count_steps: the progress-line cadence (`RunConfig.log_step_count_steps`).
  """
  strategy = compiled.strategy
  source = pipeline.open(input_fn, ModeKeys.EVAL)
  try:
    batch = source.first('evaluation')
    variables, global_step, path = store.variables_for(batch.features, batch.labels,
                                                       ModeKeys.EVAL, checkpoint_path)
    traced = compiled.traced(ModeKeys.EVAL, variables, batch.features, batch.labels)
    eval_step = compiled.eval_step()
    left = source.batches_left
    total = min(x for x in (steps, left) if x is not None) if (steps or left) else None
    # Fetches each shown batch's loss only to wait for it: one batch's loss is not the result.
    extra = [progress.ProgressHook(ModeKeys.EVAL, log_step_count_steps, show_loss=False)]
    if steps is None and total is None:
      extra.append(EndlessInputWarning(source.repeats_forever))
    runner = HookRunner([*hooks, *traced.spec.evaluation_hooks, *extra], strategy.to_host,
                        'eval step')
    runner.begin(variables)
    acc = None
    plan = BatchPlan.for_eval(batch.size, pipeline.batch_multiple, traced.padding_aware)
    count = 0
    while batch is not None:
      f, l, m = pipeline.place_batch(batch, plan)
      if acc is None:
        acc = compiled.zero_metric_states(variables, f, l, m)
      count += 1
      ctx = hooks_lib.StepContext(ModeKeys.EVAL, count, 1, batch.size, total)
      wanted = runner.before_step(ctx)
      acc, outputs = eval_step(variables, acc, f, l, m)
      values = runner.fetch(outputs, wanted)
      if strategy.sync_every and count % strategy.sync_every == 0:
        jax.block_until_ready(acc)
      runner.after_step(ctx, values)
      if ctx.stop_requested or (steps is not None and count >= steps):
        break
      batch = next(source, None)
    acc = strategy.to_host(acc)
    summary_states = acc.pop(summary_lib.EVAL_KEY, {})
    results = metrics_lib.compute(acc)
    results['global_step'] = int(global_step)
    runner.end(variables)
  finally:
    source.close()
  try:
    _write(writers.get(eval_dir), eval_dir, global_step, results, summary_states, path)
  finally:
    writers.flush()
  return results


class EndlessInputWarning(hooks_lib.Hook):
  """Warns once when `evaluate()` without `steps` may never end (TF ran on without a word).

  At once when the input is known to repeat forever (`numpy_input_fn(num_epochs=None)`); for an
  input whose end is unknown, after `after_secs` of evaluation.
  """

  def __init__(self, repeats_forever: bool, after_secs: float = 60.0):
    self.repeats_forever, self.after_secs = repeats_forever, after_secs

  def begin(self):
    self._t0, self._warned = time.monotonic(), False
    if self.repeats_forever:
      self._warn('its input repeats forever (num_epochs=None), so it will never end')

  def after_step(self, ctx, values):
    if not self._warned and time.monotonic() - self._t0 >= self.after_secs:
      self._warn(f'it has read {ctx.step} batches in {time.monotonic() - self._t0:.0f} s from '
                 'an input whose end is unknown; if that input repeats (num_epochs=None, '
                 'dataset.repeat()) it will never end')

  def _warn(self, why: str) -> None:
    self._warned = True
    logger.warning('evaluate() runs without steps= and %s: pass steps=, or an input that ends',
                   why)


def _write(writer, eval_dir: str, global_step: int, results: dict, summary_states: dict,
           path: str | None) -> None:
  """Writes the metrics and the model_fn's summaries (scalars: mean over batches, histograms:
  merged) at the global step, and appends the results to the eval dir's JSON records."""
  scalars = {k: v for k, v in results.items() if k != 'global_step'}
  histograms = {k: v for k, v in summary_states.items() if isinstance(v, summary_lib.Histogram)}
  means = metrics_lib.compute({k: v for k, v in summary_states.items() if k not in histograms})
  clash = sorted(set(means) & set(scalars))
  if clash:
    raise ValueError(f'summary.scalar name(s) {clash} are also eval_metrics names; both would '
                     f'be written to the same TensorBoard tag in {eval_dir}')
  writer.scalars(global_step, {**scalars, **means})
  writer.histograms(global_step, histograms)
  if path:
    writer.text(global_step, 'checkpoint_path', path)
  summaries.append_eval_results(eval_dir, global_step, results, path)
  logger.info('Saving dict for global step %d: %s', global_step,
              ', '.join(f'{k} = {v:.6g}' if isinstance(v, float) else f'{k} = {v}'
                        for k, v in sorted(results.items())))
