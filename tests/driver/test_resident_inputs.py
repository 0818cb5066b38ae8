"""In-memory training inputs kept on the device: each step gathers its rows there.

The batches, their order, the short final batch's padding and the trained variables must be
exactly those of the same batches sent from the host.
"""
from __future__ import annotations

import numpy as np
import pytest

from jestimator import Estimator, RunConfig, inputs
from jestimator.driver.strategy import SingleDevice

from tests import _models


def _numpy_fn(x, y):
  # 100 rows in batches of 32 over 2 epochs: six full batches and a short one of 8 rows.
  return inputs.numpy_input_fn({'x': x}, y, batch_size=32, num_epochs=2, shuffle=True, seed=3)


def _train(model_dir, input_fn, resident_max_bytes=None, **config):
  est = Estimator(_models.linear_model_fn(padding_aware=True), str(model_dir),
                  config=RunConfig(**config))
  if resident_max_bytes is not None:
    est.input_pipeline.resident_max_bytes = resident_max_bytes
  est.train(input_fn)
  return _models.checkpoint_params(est)


@pytest.fixture
def gathers(monkeypatch):
  """Counts the gathering train steps built (one per train() that takes the device path)."""
  built = []
  original = SingleDevice.gather_train_step

  def counting(self, model, with_outputs=False, *args):
    built.append(with_outputs)
    return original(self, model, with_outputs, *args)

  monkeypatch.setattr(SingleDevice, 'gather_train_step', counting)
  return built


def test_device_gather_trains_exactly_as_host_batches(tmp_path, gathers):
  x, y = _models.make_data(100)
  resident = _train(tmp_path / 'resident', _numpy_fn(x, y))
  assert gathers == [False]  # the device path ran

  # The same batches from a generator (sliced on the host, sent every step).
  batches = list(_numpy_fn(x, y)(RunConfig()))
  assert [len(b[1]) for b in batches] == [32] * 6 + [8]
  host = _train(tmp_path / 'host', lambda: iter(batches))
  assert gathers == [False]
  assert int(resident['global_step']) == int(host['global_step']) == 7
  assert _models.tree_equal(resident, host)


def test_large_inputs_stay_on_the_host(tmp_path, gathers):
  x, y = _models.make_data(100)
  resident = _train(tmp_path / 'resident', _numpy_fn(x, y))
  sliced = _train(tmp_path / 'sliced', _numpy_fn(x, y), resident_max_bytes=x.nbytes)  # x, y exceed
  assert gathers == [False]  # only the first train() gathered
  assert _models.tree_equal(resident, sliced)


def test_steps_per_loop_uses_host_stacks(tmp_path, gathers):
  x, y = _models.make_data(100)
  looped = _train(tmp_path / 'loop', _numpy_fn(x, y), steps_per_loop=3)
  assert gathers == []
  assert int(looped['global_step']) == 7


def test_a_nan_is_named_at_its_step_and_never_checkpointed(tmp_path, gathers):
  # Row 501 in batches of 10 in order: step 51 is the first non-finite one. The device path
  # carries a sticky flag; reading it still names the exact step from the per-step flags.
  from jestimator import hooks as hooks_lib
  from jestimator.checkpoints import Checkpointer
  x, y = _models.make_data(1000)
  x[501] = np.nan
  est = Estimator(_models.linear_model_fn(padding_aware=True), str(tmp_path / 'm'),
                  config=RunConfig(save_checkpoints_steps=10, keep_checkpoint_max=20,
                                   log_step_count_steps=1000, save_summary_steps=1000))
  fn = inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False)
  with pytest.raises(hooks_lib.NanLossDuringTrainingError, match='at step 51;'):
    est.train(fn, max_steps=95)
  assert gathers == [False]
  ckpt = Checkpointer(est.model_dir, read_only=True)
  assert ckpt.all_steps() == [0, 10, 20, 30, 40, 50]  # every save before the NaN, none after
  for value in ckpt.restore_raw_variables(50).values():
    assert np.all(np.isfinite(value))
