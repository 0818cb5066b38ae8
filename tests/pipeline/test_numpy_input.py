"""numpy_input_fn / pandas_input_fn: batching, epochs, shuffling, resumable positions, errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jestimator import inputs
from jestimator.run_config import RunConfig


def _xy(n=100):
  x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
  return {'a': x, 'b': np.arange(n, dtype=np.int32)}, np.arange(n, dtype=np.float32) * 10


def test_batches_with_short_last_batch():
  x, y = _xy()
  batches = list(inputs.numpy_input_fn(x, y, batch_size=32, shuffle=False)())
  assert [len(f['b']) for f, _ in batches] == [32, 32, 32, 4]
  rows = np.concatenate([f['b'] for f, _ in batches])
  np.testing.assert_array_equal(rows, np.arange(100))
  for f, l in batches:  # features and labels stay aligned row by row
    np.testing.assert_array_equal(l, f['b'] * 10.0)
    np.testing.assert_array_equal(f['a'][:, 0], f['b'] * 2.0)


def test_predict_input_yields_features_only():
  x, _ = _xy(10)
  first = next(iter(inputs.numpy_input_fn(x, batch_size=4, shuffle=False)()))
  assert isinstance(first, dict) and sorted(first) == ['a', 'b']


def test_single_array_becomes_x_feature():
  arr = np.ones((5, 3), np.float32)
  f, _ = next(iter(inputs.numpy_input_fn(arr, np.zeros(5), batch_size=5, shuffle=False)()))
  assert list(f) == ['x'] and f['x'].shape == (5, 3)


def test_repeat_forever_batches_are_always_full_and_cover_each_epoch():
  x, y = _xy()
  it = inputs.numpy_input_fn(x, y, batch_size=32, num_epochs=None, shuffle=True, seed=3)()
  batches = [next(it) for _ in range(10)]
  assert all(len(f['b']) == 32 for f, _ in batches)
  rows = np.concatenate([f['b'] for f, _ in batches])
  # 320 rows = 3 full epochs + 20 rows: each epoch is a permutation of 0..99.
  for e in range(3):
    np.testing.assert_array_equal(np.sort(rows[e * 100:(e + 1) * 100]), np.arange(100))
  assert not np.array_equal(rows[:100], rows[100:200])  # a new order each epoch


def test_finite_epochs_cross_epoch_boundaries_like_tf():
  x, y = _xy()
  batches = list(inputs.numpy_input_fn(x, y, batch_size=32, num_epochs=2, shuffle=False)())
  # 200 rows in batches of 32: six full batches and one of 8, as TF's queue (dequeue_up_to).
  assert [len(f['b']) for f, _ in batches] == [32] * 6 + [8]
  rows = np.concatenate([f['b'] for f, _ in batches])
  np.testing.assert_array_equal(rows, np.concatenate([np.arange(100)] * 2))


def test_shuffle_one_epoch_is_a_permutation_deterministic_in_seed():
  x, y = _xy()
  order = lambda seed: np.concatenate(
      [f['b'] for f, _ in inputs.numpy_input_fn(x, y, batch_size=32, shuffle=True, seed=seed)()])
  a, b, c = order(1), order(1), order(2)
  np.testing.assert_array_equal(np.sort(a), np.arange(100))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert not np.array_equal(a, np.arange(100))


def test_seed_none_follows_run_config_seed():
  x, y = _xy()
  fn = inputs.numpy_input_fn(x, y, batch_size=100, shuffle=True)
  first = lambda cfg: next(iter(inputs.call_input_fn(fn, 'train', None, cfg)))[0]['b']
  np.testing.assert_array_equal(first(RunConfig(seed=5)), first(RunConfig(seed=5)))
  assert not np.array_equal(first(RunConfig(seed=5)), first(RunConfig(seed=6)))


def test_get_state_set_state_resumes_exactly_across_epochs():
  x, y = _xy()
  fn = inputs.numpy_input_fn(x, y, batch_size=32, num_epochs=None, shuffle=True, seed=7)
  it = fn()
  for _ in range(5):  # into the second epoch
    next(it)
  state = it.get_state()
  assert state['epoch'] == 1
  rest = [next(it)[0]['b'] for _ in range(6)]
  resumed = fn()
  resumed.set_state(state)
  np.testing.assert_array_equal(np.concatenate([next(resumed)[0]['b'] for _ in range(6)]),
                                np.concatenate(rest))


def test_set_state_of_another_input_fn_is_a_value_error():
  x, y = _xy()
  state = inputs.numpy_input_fn(x, y, batch_size=32, shuffle=True, seed=1)().get_state()
  other = inputs.numpy_input_fn(x, y, batch_size=16, shuffle=True, seed=1)()
  with pytest.raises(ValueError, match='different input_fn'):
    other.set_state(state)


def test_at_end_of_finite_input():
  x, y = _xy(10)
  it = inputs.numpy_input_fn(x, y, batch_size=4, shuffle=False)()
  seen = 0
  while not it.at_end():
    seen += len(next(it)[1])
  assert seen == 10
  with pytest.raises(StopIteration):
    next(it)


@pytest.mark.parametrize('shuffle', [None, 0, 'yes'])
def test_numpy_input_fn_needs_explicit_shuffle(shuffle):
  x, y = _xy(4)
  with pytest.raises(ValueError, match='shuffle'):
    inputs.numpy_input_fn(x, y, shuffle=shuffle)


def test_numpy_input_fn_bad_arguments():
  x, y = _xy(4)
  with pytest.raises(ValueError, match='first dimension'):
    inputs.numpy_input_fn(x, y[:3], shuffle=False)
  with pytest.raises(ValueError, match='batch_size'):
    inputs.numpy_input_fn(x, y, batch_size=0, shuffle=False)
  with pytest.raises(ValueError, match='num_epochs'):
    inputs.numpy_input_fn(x, y, num_epochs=0, shuffle=False)
  with pytest.raises(ValueError, match=r"\['a'\]"):
    inputs.numpy_input_fn(x, {'a': y}, shuffle=False)


def test_pandas_input_fn():
  df = pd.DataFrame({'a': np.arange(10, dtype=np.float32), 'c': list('abcdefghij')},
                    index=np.arange(10) + 100)
  target = pd.Series(np.arange(10, dtype=np.float32) * 2, index=df.index)
  batches = list(inputs.pandas_input_fn(df, target, batch_size=4, shuffle=False)())
  assert [len(l) for _, l in batches] == [4, 4, 2]
  f, l = batches[0]
  assert sorted(f) == ['a', 'c']
  np.testing.assert_array_equal(f['a'], [0, 1, 2, 3])
  np.testing.assert_array_equal(l, [0, 2, 4, 6])
  assert list(f['c']) == ['a', 'b', 'c', 'd']  # strings stay on the host for feature columns
  shuffled = np.concatenate([f['a'] for f, _ in inputs.pandas_input_fn(
      df, target, batch_size=4, shuffle=True, seed=0)()])
  np.testing.assert_array_equal(np.sort(shuffled), np.arange(10))


def test_pandas_input_fn_errors():
  df = pd.DataFrame({'a': np.arange(4.0), 'target': np.arange(4.0)})
  y = pd.Series(np.arange(4.0))
  with pytest.raises(ValueError, match='shuffle'):
    inputs.pandas_input_fn(df[['a']], y)
  with pytest.raises(ValueError, match='target_column'):
    inputs.pandas_input_fn(df, y, shuffle=False)
  with pytest.raises(ValueError, match='index'):
    inputs.pandas_input_fn(df[['a']], pd.Series(np.arange(4.0), index=[5, 6, 7, 8]),
                           shuffle=False)


def test_numpy_input_fn_takes_a_dataframe_as_a_dict_of_columns():
  df = pd.DataFrame({'a': np.arange(6, dtype=np.float32), 'b': list('uvwxyz'), 3: np.ones(6)})
  labels = pd.DataFrame({'p': np.arange(6) * 2, 'q': np.arange(6) * 3})
  (f, l), (f2, _) = list(inputs.numpy_input_fn(df, labels, batch_size=3, shuffle=False)())
  assert sorted(f) == ['3', 'a', 'b']  # one feature per column, not one feature 'x'
  np.testing.assert_array_equal(f['a'], [0, 1, 2])
  assert list(f2['b']) == ['x', 'y', 'z']
  assert sorted(l) == ['p', 'q']
  np.testing.assert_array_equal(l['q'], [0, 3, 6])
  (_, series), = list(inputs.numpy_input_fn(df, pd.Series(np.arange(6.0)), batch_size=6,
                                            shuffle=False)())
  np.testing.assert_array_equal(series, np.arange(6.0))
