"""Compile budget: one compilation of each program per `train()` call, short final batch included.

Counted with `jax.monitoring` (conftest's `compile_counter`) and named from JAX's compile log.
No timing is asserted.
"""
from __future__ import annotations

import contextlib
import logging

import jax
import numpy as np
import pytest

import _models
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig

_LOWERING = '/jax/core/compile/jaxpr_to_mlir_module_duration'


@contextlib.contextmanager
def compiled_names():
  """Yields the list of programs (`jit(name)`) compiled inside the block."""
  names: list[str] = []

  class Names(logging.Handler):
    def emit(self, record):
      msg = record.getMessage()
      if msg.startswith('Compiling '):
        names.append(msg.split(' with ')[0][len('Compiling '):])

  handler = Names(logging.WARNING)
  logger = logging.getLogger('jax')
  logger.addHandler(handler)
  # Process-wide (`jax.log_compiles()` is thread-local): the train step may compile in a thread.
  before = jax.config.jax_log_compiles
  jax.config.update('jax_log_compiles', True)
  try:
    yield names
  finally:
    jax.config.update('jax_log_compiles', before)
    logger.removeHandler(handler)


def _input(x, y, epochs):
  # 100 rows in batches of 32; epochs run on into each other, so 2 epochs are six full batches
  # and a short one of 8 rows, 1 epoch three and one of 4.
  return inputs.numpy_input_fn({'x': x}, y, batch_size=32, num_epochs=epochs, shuffle=True)


@pytest.mark.parametrize('steps_per_loop', [1, 3])
def test_one_compilation_per_program_with_a_short_final_batch(tmp_path, steps_per_loop,
                                                              compile_counter):
  x, y = _models.make_data(100)
  est = Estimator(_models.linear_model_fn(padding_aware=True), str(tmp_path / 'm'),
                  config=RunConfig(steps_per_loop=steps_per_loop))
  with compiled_names() as names:
    est.train(_input(x, y, 2))
  # The state's initialiser (variables + optimizer state in one program) and the train step;
  # with steps_per_loop the loop too (every group size runs in it), and the step once for the
  # short batch.
  want = ['jit(create)', 'jit(train_step)'] + (['jit(loop)'] if steps_per_loop > 1 else [])
  assert sorted(names) == sorted(want), names
  assert compile_counter.n == len(want), names
  assert int(est.get_variable_value('global_step')) == 7

  compile_counter.reset()
  with compiled_names() as names:  # a second train() on the same object compiles nothing
    est.train(_input(x, y, 1))
  assert compile_counter.n == 0, names
  assert int(est.get_variable_value('global_step')) == 11


def test_padded_final_batch_trains_exactly_as_unpadded(tmp_path):
  """Padding the short batch (zero weights) gives the parameters of running it at its size."""
  x, y = _models.make_data(100)
  params = {}
  for aware in (True, False):  # False: the plain mean loss, short batch run unpadded
    est = Estimator(_models.linear_model_fn(padding_aware=aware), str(tmp_path / str(aware)))
    est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=32, num_epochs=2, shuffle=False))
    params[aware] = [est.get_variable_value(n) for n in est.get_variable_names()
                     if n.startswith('params/')]
  for a, b in zip(params[True], params[False]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _summarised_model_fn(features, labels, mode):
  import flax.linen as nn
  import jax.numpy as jnp
  import optax

  from jestimator import example_mask, summary
  from jestimator.spec import EstimatorSpec
  hidden = nn.relu(nn.Dense(4)(features['x']))
  summary.histogram('hidden', hidden)
  logits = nn.Dense(1)(hidden)[:, 0]
  losses = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32))
  mask = example_mask()
  mask = jnp.ones_like(losses) if mask is None else mask  # None while tracing the initialiser
  return EstimatorSpec(mode, loss=jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0),
                       optimizer=optax.sgd(0.1))


def test_a_model_fn_with_summaries_compiles_its_train_step_once(tmp_path, compile_counter):
  """The steps that write summaries and those that do not run one program (the summaries under
  a runtime switch), and the summaries arrive at the steps that ask for them."""
  from jestimator import hooks

  class AskEvery3(hooks.Hook):
    def __init__(self):
      self.seen = {}

    def before_step(self, ctx):
      return ('summaries',) if ctx.step % 3 == 0 else ()

    def after_step(self, ctx, values):
      if 'summaries' in values:
        self.seen[ctx.step] = float(np.sum(values['summaries']['histograms']['hidden'].counts))

  x, y = _models.make_data(100)
  for resident in (True, False):  # in-memory arrays gathered on the device; a generator's batches
    est = Estimator(_summarised_model_fn, str(tmp_path / str(resident)),
                    config=RunConfig(save_summary_steps=2))
    fn = _input(x, y, 2) if resident else (lambda: iter(list(_input(x, y, 2)(RunConfig()))))
    ask = AskEvery3()
    compile_counter.reset()
    with compiled_names() as names:
      est.train(fn, hooks=[ask])
    assert sorted(names) == ['jit(create)', 'jit(train_step)'], names
    assert compile_counter.n == 2, names
    # Asked for by this hook (3, 6) or the summary saver (every 2 steps, and at the last step
    # when the input's end is known: the in-memory one): full batches of 32 rows x 4 units; the
    # short last batch counts its 8 real rows only. Steps 1 and 5 computed none.
    last = {7: 32.0} if resident else {}
    assert ask.seen == {2: 128.0, 3: 128.0, 4: 128.0, 6: 128.0, **last}
