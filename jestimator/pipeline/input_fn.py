"""Calling an input_fn: the first stage of the input pipeline (the core's plumbing).

`call_input_fn` calls it with whichever of mode / params / config / input_context it names;
`iterate` turns what it returned into an iterator of raw batches; `resume` moves a `Resumable`
iterator to the position a checkpoint saved. The input functions users call
(`numpy_input_fn`, `pandas_input_fn`, `tfrecord_input_fn`, `csv_input_fn`) live elsewhere
(`pipeline.numpy_input`, `jestimator.io`) and are gathered in `jestimator.inputs`.

An `input_fn` in general is any callable returning an iterable of `(features, labels)` (or
`features` alone for predict), `features` a dict of numpy arrays with a leading batch dimension.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np

from jestimator.model.fn_args import call_with_named_args

logger = logging.getLogger('jestimator')


@runtime_checkable
class Resumable(Protocol):
  """An input iterator whose position is saved in checkpoints and restored on resume (as the
  built-in iterators of `numpy_input_fn` and `tfrecord_input_fn`). An optional `at_end()` is
  honoured: a restored position at the end of a finite input starts a fresh pass, as TF's
  re-run of input_fn on every `train()` call did."""

  def get_state(self) -> dict: ...

  def set_state(self, state: dict) -> None: ...


def call_input_fn(input_fn: Callable, mode: str, params: Any, config: Any,
                  input_context: Any = None) -> Any:
  """Calls `input_fn` with whichever of mode/params/config/input_context it names.

  Raises:
    TypeError: `input_fn` is data rather than a function (named by type, never printed whole),
      with the wrapper to use.
  """
  if not callable(input_fn):
    kind = f'{type(input_fn).__module__}.{type(input_fn).__name__}'
    if is_dataframe(input_fn):
      hint = ('wrap the DataFrame: jestimator.inputs.pandas_input_fn(df, y=labels, '
              'shuffle=True or False)')
    elif isinstance(input_fn, (np.ndarray, Mapping, list, tuple)):
      hint = ('wrap the arrays: jestimator.inputs.numpy_input_fn({name: array}, y=labels, '
              'shuffle=True or False)')
    else:
      hint = 'pass a function returning an iterable of (features, labels) batches'
    raise TypeError(f'input_fn must be a callable, got a {kind}: {hint}')
  # A fresh deep copy of params per call, as TF's: a mutating input_fn leaks into nothing else.
  return call_with_named_args(
      input_fn, 'input_fn',
      dict(mode=mode, params=copy.deepcopy(params), config=config, input_context=input_context),
      required=())


def is_single_batch(result: Any) -> bool:
  """Whether an input_fn returned one batch (`(features dict, labels)` or a features dict) rather
  than an iterable of batches."""
  return (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Mapping)) or (
      isinstance(result, Mapping))


def iterate(result: Any) -> Iterator:
  """An iterator over what an input_fn returned (an iterable, or a single batch once)."""
  if is_single_batch(result):
    return iter([result])
  try:
    return iter(result)
  except TypeError:
    raise TypeError('input_fn must return an iterable of (features, labels) batches (or features '
                    f'alone), got {type(result).__name__}') from None


def resume(iterator: Resumable, position: dict) -> None:
  """Moves `iterator` to `position` (from a checkpoint), or leaves it at its start when the
  position belongs to another input_fn or to the end of this finite one."""
  try:
    fresh = iterator.get_state()
    iterator.set_state(position)
    at_end = getattr(iterator, 'at_end', None)  # numpy_input_fn's and tfrecord_input_fn's
    if callable(at_end) and at_end():
      # An earlier train() consumed this finite input to its end: this call makes a new pass
      # (as TF re-ran input_fn on every call), so epoch-by-epoch train() loops keep working.
      iterator.set_state(fresh)
    else:
      logger.info('Resuming input at epoch %s, offset %s', position.get('epoch'),
                  position.get('offset'))
  except ValueError:  # another input_fn than the checkpoint's: start it from its beginning
    pass


def is_dataframe(x: Any) -> bool:
  """A pandas DataFrame (checked without importing pandas, an optional dependency)."""
  return type(x).__module__.split('.')[0] == 'pandas' and hasattr(x, 'columns')
