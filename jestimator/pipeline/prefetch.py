"""Producing batches ahead of use: `Prefetcher` (a background thread) and `Inline` (none)."""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

from jestimator.pipeline.input_fn import Resumable


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
    self._get_state = iterator.get_state if isinstance(iterator, Resumable) else None
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
    self._get_state = iterator.get_state if isinstance(iterator, Resumable) else None

  def __iter__(self):
    return self

  def __next__(self):
    item = next(self._it)
    return self._produce(item), self._get_state() if self._get_state else None

  def close(self):
    pass
