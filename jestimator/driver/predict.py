"""The predict loop: one dict per input row (or per batch), padding dropped."""
from __future__ import annotations

import collections
from typing import Any, Iterator, Mapping

import jax
import numpy as np

from jestimator.driver import hooks as hooks_lib
from jestimator.driver import progress
from jestimator.driver.hook_runner import HookRunner
from jestimator.model import predictions as predictions_lib
from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline.plan import BatchPlan

#: Batches dispatched ahead of the one being converted when no hook watches the steps: a short
#: step (a linear model's ~50 us) otherwise waits for each batch's transfer to the host.
IN_FLIGHT = 4


def predict(compiled, store, pipeline, input_fn, predict_keys, hooks, checkpoint_path,
            yield_single_examples, log_step_count_steps: int = 100) -> Iterator[Any]:
  """Yields predictions; see `Estimator.predict` (arguments checked by it).

  Hooks may fetch prediction keys (on the host anyway) and, through the step variant that
  returns them, the model_fn's `LoggingTensorHook` tensors; `log_step_count_steps` is the
  progress-line cadence.
  """
  strategy = compiled.strategy
  source = pipeline.open(input_fn, ModeKeys.PREDICT)
  try:
    batch = source.first('prediction')
    variables, _, _ = store.variables_for(batch.features, None, ModeKeys.PREDICT,
                                          checkpoint_path)
    spec = compiled.traced(ModeKeys.PREDICT, variables, batch.features, None).spec
    runner = HookRunner([*hooks, *spec.prediction_hooks], strategy.to_host, 'predict step')
    prediction_names = set(spec.predictions) if isinstance(spec.predictions, Mapping) else set()
    prediction_names |= set(spec.string_outputs or {})
    # Without hooks `IN_FLIGHT` batches stay in flight: the device computes batches i+1.. while
    # the host converts batch i. Hooks see each step's before_step and after_step in order.
    in_flight = not runner
    # The progress display fetches nothing, so it does not stop the batch in flight.
    runner.add(progress.ProgressHook(ModeKeys.PREDICT, log_step_count_steps, fetch_loss=False))
    runner.begin(variables)
    plan = BatchPlan.for_predict(batch.size, pipeline.batch_multiple)
    count = 0
    depth = IN_FLIGHT if in_flight else 0  # batches dispatched ahead of the one converted
    pending: collections.deque = collections.deque()
    while batch is not None or pending:
      if batch is not None:
        pad_to = plan.rows(batch.size)
        batch.labels = None
        count += 1
        ctx = hooks_lib.StepContext(ModeKeys.PREDICT, count, 1, batch.size, source.batches_left)
        wanted = runner.before_step(ctx)
        full = bool(wanted - prediction_names)
        features, _, mask = pipeline.place_batch(batch, plan)
        out = compiled.predict_step(full)(variables, features, mask)
        out, extra = out if full else (out, {})
        pending.append((ctx, out, extra, wanted, batch.size, pad_to))
        batch = next(source, None)
        if batch is not None and len(pending) <= depth:
          continue  # dispatch the next batch before converting this one
      ctx, out, extra, wanted, n, padded = pending.popleft()
      out = jax.tree.map(lambda a: np.asarray(a)[:n],
                         predictions_lib.check_batch_dims(strategy.to_host(out), padded))
      out = predictions_lib.finish(out, spec.string_outputs, None)
      values = runner.fetch(extra, wanted, out if isinstance(out, Mapping) else {})
      out = predictions_lib.finish(out, None, predict_keys)
      runner.after_step(ctx, values)
      if yield_single_examples:
        yield from predictions_lib.split_rows(out, n)
      else:
        yield out
      if ctx.stop_requested:
        break
    runner.end(variables)
  finally:
    source.close()
