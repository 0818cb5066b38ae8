"""Batching concurrent requests: one worker thread runs the models on merged batches.

Requests for the same key (model version and signature) that are waiting while the model runs
(or that arrive within `timeout_s` of the first) are concatenated up to `max_batch_size` rows and
scored in one call, then split back. A failing merged batch is retried request by request, so one
bad request never fails its neighbours.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any, Callable, Hashable

import numpy as np

from jestimator.serving import raw_features as raw_lib


Run = Callable[[dict, int], dict]


class _Item:
  __slots__ = ('run', 'key', 'features', 'n', 'result', 'error', 'done')

  def __init__(self, run: Run, key: Hashable, features: dict, n: int):
    self.run, self.key, self.features, self.n = run, key, features, n
    self.result = self.error = None
    self.done = threading.Event()


class Batcher:
  """Runs each request's `run(features, n) -> {output: array [n, ...]}` on merged requests.

  Requests merge only with requests of the same `key` (whose `run` must be the same function, e.g.
  one model version's `ServedModel.run` for one signature).

  Args:
    max_batch_size: most rows in one merged batch (a larger single request runs alone).
    timeout_s: how long the first request of a batch waits for more (0: take only those already
      queued; concurrency still batches, since requests queue while the model runs).
    on_batch: called as `on_batch(key, rows)` after each merged batch ran (metrics).
  """

  def __init__(self, max_batch_size: int = 128, timeout_s: float = 0.0,
               on_batch: Callable[[Hashable, int], None] | None = None):
    if max_batch_size < 1:
      raise ValueError(f'max_batch_size must be >= 1, got {max_batch_size}')
    if timeout_s < 0:
      raise ValueError(f'batch timeout must be >= 0, got {timeout_s}')
    self._on_batch = on_batch
    self._max = int(max_batch_size)
    self._timeout = float(timeout_s)
    self._queue: queue.SimpleQueue = queue.SimpleQueue()
    self._pending: collections.deque = collections.deque()
    self._stop = False
    self.batches_run = 0
    self._thread = threading.Thread(target=self._loop, name='jestimator-batcher', daemon=True)
    self._thread.start()

  def submit(self, run: Run, key: Hashable, features: dict[str, np.ndarray], n: int
             ) -> dict[str, Any]:
    """Scores one request with `run` (blocking); re-raises the model's exception for it."""
    if self._stop:
      raise RuntimeError('the batcher is closed')
    item = _Item(run, key, features, n)
    self._queue.put(item)
    item.done.wait()
    if item.error is not None:
      raise item.error
    return item.result

  def close(self) -> None:
    self._stop = True
    self._queue.put(None)
    self._thread.join(timeout=5)

  # -- worker -------------------------------------------------------------------------------------
  def _next(self, timeout: float | None):
    if self._pending:
      return self._pending.popleft()
    if timeout is None:
      return self._queue.get()
    if timeout <= 0:
      return self._queue.get_nowait()
    return self._queue.get(timeout=timeout)

  def _loop(self):
    while True:
      first = self._next(None)
      if first is None:
        return
      group, rows = [first], first.n
      deadline = time.monotonic() + self._timeout
      while rows < self._max:
        try:
          item = self._queue.get_nowait() if self._timeout == 0 else self._queue.get(
              timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
          break
        if item is None:
          self._pending.append(None)
          break
        if item.key != first.key or rows + item.n > self._max:
          self._pending.append(item)
          if rows + item.n > self._max:
            break
          continue
        group.append(item)
        rows += item.n
      self._process(group, rows)

  def _process(self, group: list[_Item], rows: int):
    self.batches_run += 1
    try:
      features = raw_lib.concat([it.features for it in group])
      out = group[0].run(features, rows)
    except Exception as e:  # noqa: BLE001 - reported to the requests
      if len(group) == 1:
        group[0].error = e
        group[0].done.set()
        return
      for it in group:  # find the culprit: each request on its own
        self._process([it], it.n)
      return
    if self._on_batch is not None:
      self._on_batch(group[0].key, rows)
    start = 0
    for it in group:
      it.result = {k: v[start:start + it.n] for k, v in out.items()}
      start += it.n
      it.done.set()
