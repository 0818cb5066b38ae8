"""Evaluating a population: every member on the same batches, in one compiled program.

Part of `jestimator.tuning.population` (the `Population`'s evaluations).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from jestimator.driver.estimator import Estimator
from jestimator.model import metrics as metrics_lib
from jestimator.model import steps as steps_lib
from jestimator.model import summary as summary_lib
from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline.plan import BatchPlan
from jestimator.state.train_state import TrainState


class PopulationEvaluator:
  """The template Estimator's evaluation of every member: `(state, alive) -> [results]`.

  Args:
    est: the template Estimator (its model_fn, strategy and input pipeline).
    input_fn: the evaluation input.
    steps: batches per evaluation (None: to the end of the input).

  Every member is evaluated (one compiled shape); the caller keeps the active ones' results.
  On a CPU the members run one after the other inside the program (`lax.map`): the metrics'
  `[batch, thresholds]` reductions (AUC) vectorise badly across a member axis there (about 4x
  slower for the Adult DNN's 16 members); elsewhere they run vmapped. The metrics' results are
  computed for all members in one compiled program instead of op by op per member.
  """

  def __init__(self, est: Estimator, input_fn: Callable, steps: int | None):
    self.est, self.input_fn, self.steps = est, input_fn, steps
    strategy = est.compiled_model.strategy
    accumulate = steps_lib.make_accumulate_step(est.compiled_model.model)
    if getattr(getattr(strategy, 'device', None), 'platform', None) == 'cpu':
      def step(variables, acc, f, l, m):
        return jax.lax.map(lambda va: accumulate(*va, f, l, m), (variables, acc))
    else:
      step = jax.vmap(accumulate, in_axes=(0, 0, None, None, None))
    self.step = jax.jit(step)
    self.results = jax.jit(jax.vmap(lambda acc: {k: m.result() for k, m in acc.items()}))
    self.zeros = None

  def __call__(self, state: TrainState, alive: np.ndarray) -> list[dict[str, Any]]:
    compiled, pipeline = self.est.compiled_model, self.est.input_pipeline
    source = pipeline.open(self.input_fn, ModeKeys.EVAL)
    variables = state.variables
    try:
      batch = source.first('evaluation')
      one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), variables)
      traced = compiled.traced(ModeKeys.EVAL, one, batch.features, batch.labels)
      plan = BatchPlan.for_eval(batch.size, pipeline.batch_multiple, traced.padding_aware)
      acc, count = None, 0
      while batch is not None:
        f, l, m = pipeline.place_batch(batch, plan)
        if acc is None:
          acc = self._zeros(variables, one, f, l, m)
        acc, _ = self.step(variables, acc, f, l, m)
        count += 1
        if self.steps is not None and count >= self.steps:
          break
        batch = next(source, None)
    finally:
      source.close()
    acc = dict(acc)
    acc.pop(summary_lib.EVAL_KEY, None)
    for name, m in acc.items():
      if not isinstance(m, metrics_lib.Metric):
        raise TypeError(f'eval_metrics[{name!r}] must be a jestimator.metrics state, got '
                        f'{type(m).__name__}')
    values = jax.device_get(self.results(acc))
    steps = np.asarray(jax.device_get(state.step))
    out = []
    for i in range(len(steps)):
      r = {k: _host_value(v[i]) for k, v in values.items()} if alive[i] else {}
      r['global_step'] = int(steps[i])
      out.append(r)
    return out

  def _zeros(self, variables, one, f, l, m):
    if self.zeros is None:
      shapes = jax.eval_shape(steps_lib.make_eval_step(self.est.compiled_model.model), one, f, l,
                              m)
      n = jax.tree.leaves(variables)[0].shape[0]
      self.zeros = self.est.compiled_model.strategy.put_state(
          jax.tree.map(lambda s: np.zeros((n,) + s.shape, s.dtype), shapes))
    return self.zeros


def _host_value(value) -> float | np.ndarray:
  """As `metrics.compute` returns a result: a float for a scalar, else numpy."""
  value = np.asarray(value)
  return float(value) if value.ndim == 0 else value


__all__ = ['PopulationEvaluator']
