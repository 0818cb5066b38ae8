"""`StateStore`: the newest state without a side channel, and one writer per `train()`."""
from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest

import _models
from jestimator import hooks as hooks_lib
from jestimator import inputs
from jestimator.driver import train as train_lib
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig
from jestimator.state import checkpoints as ckpt_lib


def _repeat(x, y):
  return inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False)


class _Seen(hooks_lib.CheckpointSaverListener):
  """Records, after each save, the state the store serves."""

  def __init__(self, est: Estimator):
    self.est = est
    self.served: list[int] = []
    self.refs: list[weakref.ref] = []

  def after_save(self, step):
    newest = self.est.state_store.newest
    self.served.append(None if newest is None else int(newest.step))
    if newest is not None:
      self.refs.append(weakref.ref(newest))
    return False


def test_the_loop_returns_its_final_state_and_the_store_keeps_it(data, model_dir):
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_checkpoints_steps=2, keep_checkpoint_max=None))
  seen = _Seen(est)
  final = train_lib.train(est.compiled_model, est.state_store, est.input_pipeline, est.config,
                          _repeat(x, y), [], 5, None, [seen], est.summary_writers)
  assert int(final.step) == 5
  # While a listener runs, the store serves the state it just saved (an evaluating listener
  # needs no reload): the start save at 0, the periodic ones, the final one.
  assert seen.served == [0, 2, 4, 5]
  # It keeps no second copy alive after the loop moved on: only the final state survives.
  gc.collect()
  assert [r() is not None for r in seen.refs] == [False, False, False, True]
  assert est.state_store.newest is final
  # The state held is the final checkpoint's, which the next verb uses.
  np.testing.assert_array_equal(
      np.asarray(final.params['Dense_0']['kernel']),
      est.get_variable_value('params/Dense_0/kernel'))
  before = est.evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=10, shuffle=False))
  assert before['global_step'] == 5
  # Training on starts from that very state; the store then holds it only weakly.
  final2 = train_lib.train(est.compiled_model, est.state_store, est.input_pipeline, est.config,
                           _repeat(x, y), [], 1, None, [], est.summary_writers)
  assert int(final2.step) == 6 and est.state_store.newest is final2
  ref = weakref.ref(final)
  del final
  gc.collect()
  assert ref() is None


def test_a_non_finite_stop_keeps_no_state(data, model_dir):
  x, y = data
  x = x.copy()
  x[50:] = np.nan  # step 6 is the first NaN loss
  est = Estimator(_models.linear_model_fn(), model_dir,
                  config=RunConfig(save_checkpoints_steps=2, fail_on_nan_loss=False))
  fn = inputs.numpy_input_fn({'x': x}, y, batch_size=10, shuffle=False)
  final = train_lib.train(est.compiled_model, est.state_store, est.input_pipeline, est.config,
                          fn, [], None, None, [], est.summary_writers)
  assert final is None
  gc.collect()
  assert est.state_store.newest is None  # the saved state at 4 was dropped by the loop
  assert est.latest_checkpoint() == os.path.join(est.model_dir, '4')


def test_training_checkpoints_write_only_after_start_writing(data, tmp_path):
  x, y = data
  model_dir = str(tmp_path / 'fresh')
  est = Estimator(_models.linear_model_fn(), model_dir)
  checkpoints = est.state_store.training()
  try:
    assert checkpoints.start_step is None and checkpoints.start_meta == {}
    state = checkpoints.train_state({'x': x[:10]}, y[:10])
    with pytest.raises(RuntimeError, match='before start_writing'):
      checkpoints.save(state, 0, None)
    assert not os.path.exists(model_dir)  # nothing on disk before the writer opens
    checkpoints.start_writing()
    checkpoints.save(state, 0, None)
  finally:
    checkpoints.close()
  assert ckpt_lib.Checkpointer(model_dir, read_only=True).latest_step() == 0
  assert est.state_store.newest is state


def test_a_held_state_whose_buffers_were_donated_is_not_served(data, model_dir):
  """A sharded train step donates its input state; a state consumed so (say one a hook still
  references) is never served: the next verb reloads the checkpoint instead."""
  import jax
  x, y = data
  est = Estimator(_models.linear_model_fn(), model_dir)
  est.train(_repeat(x, y), steps=3)
  held = est.state_store.newest
  assert held is not None
  jax.jit(lambda s: jax.tree.map(lambda a: a + 0, s), donate_argnums=0)(held)
  assert held.params['Dense_0']['kernel'].is_deleted()
  assert est.state_store.newest is None
  assert est.evaluate(inputs.numpy_input_fn({'x': x}, y, batch_size=10,
                                            shuffle=False))['global_step'] == 3
