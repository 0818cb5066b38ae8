"""Calling an input_fn (the core's plumbing): named arguments, iterating, resuming; and the public
`jestimator.inputs` module gathering the input functions users call."""
from __future__ import annotations

import numpy as np
import pytest

import jestimator
from jestimator import inputs
from jestimator.pipeline import input_fn as input_fn_lib
from jestimator.run_config import RunConfig


def test_call_input_fn_passes_only_named_arguments():
  seen = {}

  def input_fn(mode, params):
    seen.update(mode=mode, params=params)
    return []

  inputs.call_input_fn(input_fn, 'eval', {'k': 1}, RunConfig())
  assert seen == {'mode': 'eval', 'params': {'k': 1}}
  with pytest.raises(ValueError, match="'batch'"):
    inputs.call_input_fn(lambda batch: [], 'eval', None, None)
  with pytest.raises(TypeError, match='wrap the arrays: jestimator.inputs.numpy_input_fn'):
    inputs.call_input_fn({'x': np.zeros(3)}, 'eval', None, None)


def test_iterate_a_single_batch_or_an_iterable():
  batch = ({'x': np.zeros(2)}, np.zeros(2))
  assert input_fn_lib.is_single_batch(batch) and input_fn_lib.is_single_batch(batch[0])
  assert list(input_fn_lib.iterate(batch)) == [batch]
  assert list(input_fn_lib.iterate([batch, batch])) == [batch, batch]
  with pytest.raises(TypeError, match='must return an iterable'):
    input_fn_lib.iterate(3)


def test_resume_moves_to_the_position_or_starts_a_fresh_pass():
  x = {'a': np.arange(10)}
  fn = inputs.numpy_input_fn(x, batch_size=4, shuffle=False)
  it = fn()
  next(it)
  position = it.get_state()
  resumed = fn()
  input_fn_lib.resume(resumed, position)
  np.testing.assert_array_equal(next(resumed)['a'], [4, 5, 6, 7])
  # A position at the end of this finite input: the next train() makes a new pass, as TF.
  list(it)
  again = fn()
  input_fn_lib.resume(again, it.get_state())
  np.testing.assert_array_equal(next(again)['a'], [0, 1, 2, 3])
  # Another input_fn's position: this one starts at its beginning.
  other = inputs.numpy_input_fn(x, batch_size=5, shuffle=False)()
  input_fn_lib.resume(other, position)
  np.testing.assert_array_equal(next(other)['a'], [0, 1, 2, 3, 4])


def test_public_inputs_module_gathers_the_input_functions():
  assert set(inputs.__all__) >= {'numpy_input_fn', 'pandas_input_fn', 'tfrecord_input_fn',
                                 'csv_input_fn'}
  assert jestimator.inputs is inputs
  assert inputs.tfrecord_input_fn is jestimator.io.tfrecord_input_fn
  assert inputs.csv_input_fn is jestimator.io.csv_input_fn
  # The core's plumbing re-exports no user-facing input function of another package.
  assert not hasattr(input_fn_lib, 'tfrecord_input_fn')
  assert not hasattr(input_fn_lib, 'numpy_input_fn')
