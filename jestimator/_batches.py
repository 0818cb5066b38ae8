"""Host side of the input pipeline: validate, transform, pad, stack and prefetch batches."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from jestimator.mode_keys import ModeKeys

_STRING_KINDS = 'OSUT'


def split(item: Any, mode: str) -> tuple[Any, Any]:
  """`(features, labels)` from what an input iterator yielded."""
  if isinstance(item, tuple):
    if len(item) != 2:
      raise ValueError(f'input_fn must yield (features, labels) pairs, got a tuple of {len(item)}')
    return item
  return item, None


def to_numpy(features: Any, labels: Any) -> tuple[dict[str, np.ndarray], Any]:
  """Checks the structure of one raw batch and converts its leaves to numpy."""
  if not isinstance(features, Mapping):
    raise TypeError('input_fn must yield features as a dict {feature_key: array}, got '
                    f'{type(features).__name__}')
  features = {str(k): _as_array(v) for k, v in features.items()}
  if isinstance(labels, Mapping):
    labels = {str(k): _as_array(v) for k, v in labels.items()}
  elif labels is not None:
    labels = _as_array(labels)
  return features, labels


def _as_array(v):
  if isinstance(v, np.ndarray):
    return v
  if hasattr(v, 'to_numpy'):  # pandas
    return v.to_numpy()
  try:
    return np.asarray(v)
  except ValueError:  # ragged lists: keep as object array of rows for feature columns
    out = np.empty(len(v), dtype=object)
    out[:] = list(v)
    return out


def batch_size_of(features: Mapping[str, np.ndarray], labels: Any) -> int:
  """The common leading dimension, or a ValueError naming every array's size."""
  sizes = {f'features[{k!r}]': _leading(v) for k, v in features.items()}
  if isinstance(labels, Mapping):
    sizes.update({f'labels[{k!r}]': _leading(v) for k, v in labels.items()})
  elif labels is not None:
    sizes['labels'] = _leading(labels)
  if not sizes:
    raise ValueError('input_fn yielded an empty features dict')
  if len(set(sizes.values())) != 1:
    raise ValueError(f'arrays in one batch disagree on the batch size: {sizes}')
  return next(iter(sizes.values()))


def _leading(v) -> int:
  if np.ndim(v) == 0:
    raise ValueError('every feature and label needs a leading batch dimension; got a scalar')
  return len(v)


def check_numeric(features: Mapping[str, np.ndarray], labels: Any) -> None:
  """Strings cannot reach the device: say which feature holds them and what to do."""
  for k, v in features.items():
    if v.dtype.kind in _STRING_KINDS:
      raise TypeError(
          f'feature {k!r} holds {v.dtype} values (strings or objects), which JAX cannot hold; '
          'declare feature columns (Estimator(..., feature_columns=[...])) to turn strings into '
          'ids on the host')
  for name, v in (labels.items() if isinstance(labels, Mapping) else [('labels', labels)]):
    if v is not None and v.dtype.kind in _STRING_KINDS:
      raise TypeError(f'{name} hold strings ({v.dtype}); pass label_transform (e.g. a head\'s '
                      'labels_to_ids with label_vocabulary) to map them to ids')


class HostStage:
  """Raw batch -> numeric batch: feature columns, pass-through numerics, label transform.

  Args:
    columns_stage: callable raw features -> transformed features (feature columns), or None.
    label_transform: callable host labels -> numeric labels (e.g. a head's `labels_to_ids`, which
      maps string labels through a vocabulary and checks class ids), or None.
  """

  def __init__(self, columns_stage: Callable | None = None,
               label_transform: Callable | None = None):
    self.columns_stage = columns_stage
    self.label_transform = label_transform

  def features(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if self.columns_stage is None:
      return dict(features)
    out = self.columns_stage(features)
    # Numeric features no column consumed (a weight column, an example id) pass through; unused
    # strings stay on the host.
    for k, v in features.items():
      if k not in out and v.dtype.kind not in _STRING_KINDS:
        out[k] = v
    return out

  def checkpoint_record(self) -> dict[str, Any]:
    """`{'host_stage': ...}` for a checkpoint's meta: what the columns stage needs to check on
    restore (None without one). Every checkpoint has the key, so its absence marks one written
    before it existed."""
    record = getattr(self.columns_stage, 'checkpoint_record', None)
    return {'host_stage': record() if record else None}

  def check_checkpoint(self, meta: Mapping[str, Any], where: str) -> None:
    """Raises ValueError when the columns stage cannot use the checkpoint with this `meta`."""
    check = getattr(self.columns_stage, 'check_checkpoint_record', None)
    if check is None or ('host_stage' in meta and meta['host_stage'] is None):
      return
    check(meta.get('host_stage'), where)

  def labels(self, labels):
    if labels is None or self.label_transform is None:
      return labels
    return self.label_transform(labels)

  def __call__(self, features, labels):
    return self.features(features), self.labels(labels)


def prepare(item: Any, mode: str, host_stage: HostStage, needs_labels: bool,
            takes_labels: bool = True) -> tuple[dict[str, np.ndarray], Any, int]:
  """One raw batch -> `(features, labels, batch_size)`, numeric and validated."""
  features, labels = split(item, mode)
  if mode == ModeKeys.PREDICT:
    labels = None
  if labels is not None and not takes_labels:
    raise ValueError('input_fn yields labels but model_fn takes no "labels" argument (as in TF, '
                     'this is an error: add labels to the model_fn or yield features only)')
  features, labels = to_numpy(features, labels)
  if needs_labels and labels is None:
    raise ValueError(f'labels are required in mode {mode!r}: input_fn yielded features only; '
                     'yield (features, labels)')
  size = batch_size_of(features, labels)
  features, labels = host_stage(features, labels)
  check_numeric(features, labels)
  return features, labels, size


def pad_rows(tree, n: int, size: int):
  """Pads every array of `tree` from `n` to `size` rows (repeating row 0) + a float mask."""
  import jax
  mask = np.zeros(size, np.float32)
  mask[:n] = 1.0
  if n == size:
    return tree, mask
  # Row 0 rather than zeros keeps padded rows valid inputs (ids in range, no log(0)).
  pad = lambda a: np.concatenate([a, np.repeat(a[:1], size - n, axis=0)], axis=0)
  return jax.tree.map(pad, tree), mask


class Prefetcher:
  """Runs `produce(item)` for the items of an iterator in a background thread, `depth` ahead.

  Yields `(produced, position)` where `position` is the iterator's `get_state()` right after the
  item (None for iterators that cannot save their position). Exceptions of the iterator or of
  `produce` are re-raised in the consumer, in order.
  """

  _END = object()

  def __init__(self, iterator: Iterator, produce: Callable, depth: int = 2):
    self._it = iterator
    self._produce = produce
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._get_state = getattr(iterator, 'get_state', None)
    self._thread = threading.Thread(target=self._run, daemon=True, name='jestimator-prefetch')
    self._thread.start()

  def _run(self):
    try:
      for item in self._it:
        out = (self._produce(item), self._get_state() if self._get_state else None)
        while not self._stop.is_set():
          try:
            self._queue.put(out, timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set():
          return
      self._put(self._END)
    except BaseException as e:  # forwarded to the consumer
      self._put(e)

  def _put(self, item):
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return
      except queue.Full:
        continue

  def __iter__(self):
    return self

  def __next__(self):
    item = self._queue.get()
    if item is self._END:
      self._queue.put(item)  # stay exhausted
      raise StopIteration
    if isinstance(item, BaseException):
      self._queue.put(self._END)
      raise item
    return item

  def close(self):
    self._stop.set()
    self._thread.join(timeout=5)


class Inline:
  """`Prefetcher`'s interface without a thread, for sources cheaper than a thread hand-off.

  Slicing in-memory arrays takes tens of microseconds per batch; handing each batch over from a
  background thread costs more than that, and the thread competes with XLA for the cores.
  """

  def __init__(self, iterator: Iterator, produce: Callable):
    self._it = iterator
    self._produce = produce
    self._get_state = getattr(iterator, 'get_state', None)

  def __iter__(self):
    return self

  def __next__(self):
    item = next(self._it)
    return self._produce(item), self._get_state() if self._get_state else None

  def close(self):
    pass
