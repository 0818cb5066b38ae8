"""The built-in input functions over in-memory arrays: `numpy_input_fn` and `pandas_input_fn`
(public as `jestimator.inputs.numpy_input_fn`, ...).

Both mirror `tf.compat.v1.estimator.inputs` and add what TF could not do: their position (epoch,
offset and shuffle seed) is saved in every checkpoint, so a later `train()` in a new process
continues with exactly the batches that would have come next. The input pipeline knows them: it
runs the host stage once over their whole arrays (`NumpyInputFn.with_arrays`) and may keep those
on the device, gathering each batch's rows there (`ResumableIterator.next_rows`).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jestimator.pipeline.input_fn import is_dataframe

_FORMAT = 1


class ResumableIterator:
  """Iterator over `(features, labels)` batches whose position can be saved and restored.

  `get_state()` returns a JSON-serialisable dict describing the position after the last batch
  returned; `set_state(state)` moves to such a position. The Estimator stores the state of the
  batches it actually consumed in each checkpoint.
  """

  def __init__(self, fn: 'NumpyInputFn', seed: int | None = None):
    self._fn = fn
    # The shuffle seed: the input_fn's own, else the one derived from RunConfig.seed.
    self._seed = fn.seed if fn.seed is not None else (0 if seed is None else int(seed))
    self._fingerprint = fn.fingerprint if fn.seed is not None else (
        f'{fn.fingerprint},run_seed={self._seed}')
    self._epoch = 0
    self._offset = 0
    self._order = None

  def get_state(self) -> dict[str, Any]:
    return {'format': _FORMAT, 'fingerprint': self._fingerprint,
            'epoch': self._epoch, 'offset': self._offset}

  def set_state(self, state: Mapping[str, Any]) -> None:
    if state.get('fingerprint') != self._fingerprint:
      raise ValueError('input state belongs to a different input_fn '
                       f'({state.get("fingerprint")!r} vs {self._fingerprint!r})')
    self._epoch, self._offset, self._order = int(state['epoch']), int(state['offset']), None

  def epoch(self) -> tuple[int, int | None]:
    """`(epoch, num_epochs)`: the 1-based epoch the next batch starts in, and the input's
    number of epochs (None: repeats forever); for a progress display."""
    fn = self._fn
    epoch = self._epoch + (1 if fn.num_examples and self._offset >= fn.num_examples else 0)
    return (epoch + 1 if fn.num_epochs is None else min(epoch + 1, fn.num_epochs)), fn.num_epochs

  def at_end(self) -> bool:
    """Whether the next `next()` raises StopIteration (a finite input consumed to its end)."""
    fn = self._fn
    if fn.num_examples == 0:
      return True
    if fn.num_epochs is None:
      return False
    epoch = self._epoch + (1 if self._offset >= fn.num_examples else 0)
    return epoch >= fn.num_epochs

  def batches_left(self) -> int | None:
    """How many batches `next()` will still return (None when it repeats forever)."""
    fn = self._fn
    if fn.num_epochs is None:
      return None if fn.num_examples else 0
    rows = fn.num_examples * fn.num_epochs - (self._epoch * fn.num_examples + self._offset)
    return max(-(-rows // fn.batch_size), 0)

  def __iter__(self) -> 'ResumableIterator':
    return self

  def next_rows(self) -> np.ndarray:
    """The row numbers (`[batch]` int) of the next batch, advancing as `next()` does.

    Raises StopIteration at the end of a finite input.
    """
    fn = self._fn
    if fn.num_examples == 0:
      raise StopIteration
    if self._offset >= fn.num_examples:
      self._next_epoch()
    if fn.num_epochs is not None and self._epoch >= fn.num_epochs:
      raise StopIteration
    return self._next_index()

  @property
  def arrays(self) -> tuple[dict[str, np.ndarray], Any]:
    """`(x, y)`: the whole arrays the batches are rows of."""
    return self._fn.x, self._fn.y

  def __next__(self):
    fn = self._fn
    index = self.next_rows()
    features = {k: v[index] for k, v in fn.x.items()}
    if fn.y is None:
      return features
    labels = ({k: v[index] for k, v in fn.y.items()} if isinstance(fn.y, dict) else fn.y[index])
    return features, labels

  def _next_epoch(self) -> None:
    self._epoch, self._offset, self._order = self._epoch + 1, 0, None

  def _epoch_order(self) -> np.ndarray:
    fn = self._fn
    if self._order is None:
      # An epoch's order is a pure function of (seed, epoch): nothing else is needed to resume.
      self._order = (np.random.default_rng([self._seed, self._epoch]).permutation(fn.num_examples)
                     if fn.shuffle else np.arange(fn.num_examples))
    return self._order

  def _next_index(self) -> np.ndarray:
    fn = self._fn
    n, size = fn.num_examples, fn.batch_size
    stop = min(self._offset + size, n)
    index = self._epoch_order()[self._offset:stop]
    self._offset = stop
    # Batches run across epoch boundaries, as TF's queue did: always full when repeating forever
    # (dequeue_many), and with finite num_epochs only the very last batch may be short.
    while (fn.num_epochs is None or self._epoch + 1 < fn.num_epochs) and len(index) < size:
      self._next_epoch()
      take = min(size - len(index), n)
      index = np.concatenate([index, self._epoch_order()[:take]])
      self._offset = take
    return index


class NumpyInputFn:
  """An `input_fn` over dicts of numpy arrays; see `numpy_input_fn`.

  Attributes `x` (dict of arrays), `y` (array, dict or None) are the whole data; the Estimator may
  replace them once by their feature-column transform (`with_arrays`) so the host stage runs over
  whole arrays instead of once per batch.
  """

  def __init__(self, x, y, batch_size, num_epochs, shuffle, seed):
    self.x, self.y = x, y
    self.batch_size, self.num_epochs, self.shuffle, self.seed = batch_size, num_epochs, shuffle, seed
    self.num_examples = len(next(iter(x.values()))) if x else 0
    self.fingerprint = (f'n={self.num_examples},bs={batch_size},epochs={num_epochs},'
                        f'shuffle={shuffle},seed={seed},keys={",".join(sorted(x))}')

  def __call__(self, config: Any = None) -> ResumableIterator:
    """A fresh iterator; with `seed=None` the shuffle seed is `config.seed` (0 without config)."""
    return ResumableIterator(self, getattr(config, 'random_seed', None))

  def with_arrays(self, x: Mapping[str, np.ndarray], y=None) -> 'NumpyInputFn':
    """A copy over transformed arrays, same order, batching and fingerprint (so resumable)."""
    out = NumpyInputFn(dict(x), self.y if y is None else y, self.batch_size, self.num_epochs,
                       self.shuffle, self.seed)
    out.fingerprint = self.fingerprint
    return out


def numpy_input_fn(x, y=None, batch_size: int = 128, num_epochs: int | None = 1,
                   shuffle: bool | None = None, seed: int | None = None,
                   queue_capacity: int | None = None, num_threads: int | None = None,
                   ) -> NumpyInputFn:
  """An input_fn that batches numpy arrays, as `tf.compat.v1.estimator.inputs.numpy_input_fn`.

  Args:
    x: dict `{feature_key: array [n, ...]}`, a pandas DataFrame (one feature per column), or one
      array (given to the model as `features` itself would be un-TF-like in JAX, so it becomes
      `{'x': array}`).
    y: labels: an array `[n, ...]` (or Series), a dict of arrays (or DataFrame), or None
      (predict).
    batch_size: examples per batch. With finite `num_epochs` the last batch may be short.
    num_epochs: passes over the data; None repeats forever (batches are then always full).
    shuffle: must be given explicitly (True/False), as in TF.
    seed: shuffle seed; None uses `RunConfig.seed` of the Estimator calling it (so the same
      RunConfig seed gives the same batches, as TF's graph-level seed did).
    queue_capacity, num_threads: accepted for TF compatibility and ignored (no queues here).

  Returns:
    A callable `input_fn`. Its iterators are resumable (see `ResumableIterator`).

  Example:
    input_fn = numpy_input_fn({'x': xs}, ys, batch_size=32, num_epochs=None, shuffle=True)
    estimator.train(input_fn, max_steps=1000)
  """
  del queue_capacity, num_threads
  if is_dataframe(x):
    x = _columns(x)
  if is_dataframe(y):
    y = _columns(y)
  if not isinstance(shuffle, bool):
    raise ValueError(f'shuffle must be given explicitly as True or False, got {shuffle!r}')
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
  if num_epochs is not None and num_epochs <= 0:
    raise ValueError(f'num_epochs must be None or positive, got {num_epochs!r}')
  if not isinstance(x, Mapping):
    x = {'x': x}
  x = {k: np.asarray(v) for k, v in sorted(x.items())}
  if isinstance(y, Mapping):
    clash = sorted(set(y) & set(x))
    if clash:
      raise ValueError(f'label keys {clash} collide with feature keys')
    y = {k: np.asarray(v) for k, v in y.items()}
  elif y is not None:
    y = np.asarray(y)
  _check_lengths(x, y)
  return NumpyInputFn(x, y, int(batch_size), num_epochs, shuffle,
                      None if seed is None else int(seed))


def pandas_input_fn(x, y=None, batch_size: int = 128, num_epochs: int | None = 1,
                    shuffle: bool | None = None, seed: int | None = None,
                    queue_capacity: int | None = None, num_threads: int | None = None,
                    target_column: str = 'target') -> NumpyInputFn:
  """An input_fn over a pandas DataFrame (and Series of labels), as TF's `pandas_input_fn`.

  `y`'s index must equal `x`'s; `target_column` may not be a column of `x` (TF's checks). Columns
  become numpy arrays (object columns of strings stay strings for feature columns to map).
  """
  if shuffle is not None and not isinstance(shuffle, bool):
    raise ValueError(f'shuffle must be given explicitly as True or False, got {shuffle!r}')
  if shuffle is None:
    raise ValueError('shuffle must be given explicitly as True or False, got None')
  if y is not None:
    if target_column in x.columns:
      raise ValueError(f'target_column {target_column!r} is already a column of x; pick another')
    if not np.array_equal(np.asarray(x.index), np.asarray(y.index)):
      raise ValueError('index of x and y must be equal (pandas_input_fn aligns rows by index)')
  return numpy_input_fn(x, y, batch_size=batch_size, num_epochs=num_epochs,
                        shuffle=shuffle, seed=seed, queue_capacity=queue_capacity,
                        num_threads=num_threads)


def _columns(frame) -> dict[str, np.ndarray]:
  """`{str(column): values}` of a DataFrame (object columns of strings stay strings)."""
  return {str(k): frame[k].to_numpy() for k in frame.columns}


def _check_lengths(x: Mapping[str, np.ndarray], y) -> None:
  lengths = {f'x[{k!r}]': len(v) for k, v in x.items()}
  if isinstance(y, Mapping):
    lengths.update({f'y[{k!r}]': len(v) for k, v in y.items()})
  elif y is not None:
    lengths['y'] = len(y)
  if len(set(lengths.values())) > 1:
    raise ValueError(f'all arrays must have the same first dimension, got {lengths}')
