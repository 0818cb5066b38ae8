"""The predict loop: one dict per input row (or per batch), padding dropped."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import jax
import numpy as np

from jestimator.driver import hooks as hooks_lib
from jestimator.driver import progress
from jestimator.model import predictions as predictions_lib
from jestimator.model.mode_keys import ModeKeys


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
    all_hooks = list(hooks) + list(spec.prediction_hooks)
    prediction_names = set(spec.predictions) if isinstance(spec.predictions, Mapping) else set()
    prediction_names |= set(spec.string_outputs or {})
    shown = [progress.ProgressHook(ModeKeys.PREDICT, log_step_count_steps, fetch_loss=False)]
    for h in all_hooks + shown:
      h.begin()
    for h in all_hooks + shown:
      h.after_create_state(variables)
    compiled_size = pipeline.padded_size(batch.size)
    count = 0
    pending = None
    # Without hooks one batch stays in flight: the device computes batch i+1 while the host
    # converts batch i. Hooks see each step's before_step and after_step in order instead.
    in_flight = not all_hooks
    all_hooks += shown  # the progress display needs no order
    while batch is not None or pending is not None:
      dispatched = None
      if batch is not None:
        # Predictions of padded rows are dropped, so every short batch pads to the compiled size.
        pad_to = pipeline.pad_target(batch.size, compiled_size, True)
        batch.labels = None
        features, _, mask = pipeline.place_padded(batch, pad_to)
        count += 1
        ctx = hooks_lib.StepContext(ModeKeys.PREDICT, count, 1, batch.size, source.batches_left)
        wanted = set()
        for h in all_hooks:
          wanted.update(h.before_step(ctx) or ())
        full = bool(wanted - prediction_names)
        out = compiled.predict_step(full)(variables, features, mask)
        out, extra = out if full else (out, {})
        dispatched = (ctx, out, extra, wanted, batch.size, pad_to)
        batch = next(source, None)
        if not in_flight:
          pending, dispatched = dispatched, None
      if pending is not None:
        ctx, out, extra, wanted, n, padded = pending
        out = jax.tree.map(lambda a: np.asarray(a)[:n],
                           predictions_lib.check_batch_dims(strategy.to_host(out), padded))
        out = predictions_lib.finish(out, spec.string_outputs, None)
        values = hooks_lib.fetch_values(extra, wanted, strategy.to_host,
                                        out if isinstance(out, Mapping) else {}, 'predict step')
        out = predictions_lib.finish(out, None, predict_keys)
        for h in all_hooks:
          h.after_step(ctx, values)
        if yield_single_examples:
          yield from predictions_lib.split_rows(out, n)
        else:
          yield out
        if ctx.stop_requested:
          break
      pending = dispatched
    for h in all_hooks:
      h.end(variables)
  finally:
    source.close()
