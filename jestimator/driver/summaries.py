"""TensorBoard event files (tensorboardX; no TensorFlow needed) and JSON evaluation records."""
from __future__ import annotations

import itertools
import json
import logging
import os
import time
import weakref
from typing import Any, Mapping

import jax
import numpy as np

EVAL_RESULTS_FILE = 'eval_results.jsonl'
logger = logging.getLogger('jestimator')
_warned_torn: set[tuple[str, int]] = set()


class SummaryWriter:
  """Writes scalars and histograms to `logdir`, created on first write; a no-op off process 0.

  The event file is opened on the first write and kept open until `close()`: an `Estimator` keeps
  one writer per directory across its calls (`Writers`) and flushes it at the end of each call,
  so several evaluations in the same second land in one file instead of overwriting each other.
  Writes are synchronous (no writer thread) and flushed at most `flush_secs` apart (the first
  at once); the file name carries the process id and a counter, so two writers never share a
  file.
  """

  _opened = itertools.count()

  flush_secs: float = 5.0

  def __init__(self, logdir: str):
    self.logdir = logdir
    self._writer = None
    self._flushed_at: float | None = None

  def _write(self, step: int, summary) -> None:
    from tensorboardX.proto import event_pb2
    if self._writer is None:
      from tensorboardX.event_file_writer import EventsWriter
      os.makedirs(self.logdir, exist_ok=True)
      self._writer = EventsWriter(os.path.join(self.logdir, 'events'),
                                  filename_suffix=f'.{os.getpid()}.{next(self._opened)}')
    self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             summary=summary))
    # Flush on a short timer (the first write at once), so TensorBoard shows a run early;
    # TF flushed every 120 s, which left a new run blank for its first minutes.
    now = time.monotonic()
    if self._flushed_at is None or now - self._flushed_at >= self.flush_secs:
      self._flushed_at = now
      self.flush()

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """Writes every numeric 0-d value of `values` as a scalar at `step` (others are skipped)."""
    if jax.process_index() != 0:
      return
    from tensorboardX import summary as tbx
    for name, value in values.items():
      arr = np.asarray(value)
      if arr.ndim == 0 and np.issubdtype(arr.dtype, np.number):
        self._write(step, tbx.scalar(name, float(arr)))

  def histograms(self, step: int, values: Mapping[str, Any]) -> None:
    """Writes `jestimator.summary.Histogram` states (device or host) as histograms at `step`."""
    if jax.process_index() != 0 or not values:
      return
    from tensorboardX import summary as tbx
    from jestimator.model import summary
    for name, state in values.items():
      h = summary.to_host_histogram(jax.device_get(state))
      self._write(step, tbx.histogram_raw(
          name, min=h.min, max=h.max, num=h.num, sum=h.sum, sum_squares=h.sum_squares,
          bucket_limits=h.bucket_limits.tolist(), bucket_counts=h.bucket_counts.tolist()))

  def text(self, step: int, tag: str, text: str) -> None:
    if jax.process_index() == 0:
      from tensorboardX import summary as tbx
      self._write(step, tbx.text(tag, text))

  def flush(self) -> None:
    """Makes the events written so far readable; an OSError (say a full disk) names logdir."""
    if self._writer is not None:
      try:
        self._writer.flush()
      except OSError as e:
        raise OSError(e.errno, f'writing TensorBoard events to {self.logdir!r} failed: '
                               f'{e.strerror or e}') from None

  def close(self) -> None:
    """Closes the file. Never raises: it also runs at interpreter exit (`Writers`' finalizer),
    where an error would print a traceback after the real one; a failure is logged instead."""
    if self._writer is not None:
      writer, self._writer = self._writer, None
      try:
        writer.close()
      except OSError as e:
        logger.warning('Could not finish the TensorBoard event file in %s (%s: %s); events '
                       'after the last flush are lost', self.logdir, type(e).__name__, e)


class Writers:
  """One open `SummaryWriter` per directory (an Estimator holds one `Writers`).

  `flush()` at the end of every train / evaluate call makes the events readable; `close()`
  closes the files (also run when the owner is garbage collected).
  """

  def __init__(self):
    self._writers: dict[str, SummaryWriter] = {}
    self._finalizer = weakref.finalize(self, Writers._close_all, self._writers)

  def get(self, logdir: str) -> SummaryWriter:
    key = os.path.abspath(logdir)
    if key not in self._writers:
      self._writers[key] = SummaryWriter(logdir)
    return self._writers[key]

  def flush(self) -> None:
    for w in self._writers.values():
      w.flush()

  def close(self) -> None:
    self._close_all(self._writers)

  @staticmethod
  def _close_all(writers: dict[str, SummaryWriter]) -> None:
    for w in writers.values():
      w.close()
    writers.clear()


def append_eval_results(eval_dir: str, step: int, results: Mapping[str, object],
                        checkpoint_path: str | None) -> None:
  """Appends one evaluation to `eval_dir/eval_results.jsonl` (read by early stopping)."""
  if jax.process_index() != 0:
    return
  os.makedirs(eval_dir, exist_ok=True)
  record = {'global_step': int(step), 'checkpoint_path': checkpoint_path,
            'metrics': {k: _jsonable(v) for k, v in results.items()}}
  path = os.path.join(eval_dir, EVAL_RESULTS_FILE)
  with open(path, 'a+b') as f:
    # A process killed mid-append (or a full disk) leaves a last line without its newline: end
    # it first, or this record would join the torn one and be unreadable too.
    torn = f.seek(0, os.SEEK_END) > 0 and f.seek(-1, os.SEEK_END) >= 0 and f.read(1) != b'\n'
    if torn:
      logger.warning('%s ends in a torn line (an evaluation record cut short by a crash); '
                     'ending it so that the record of step %d stays readable', path, step)
      f.write(b'\n')
    f.write(json.dumps(record).encode() + b'\n')


def read_eval_results(eval_dir: str) -> dict[int, dict[str, object]]:
  """`{global_step: metrics}` of every evaluation recorded in `eval_dir` (latest wins)."""
  path = os.path.join(eval_dir, EVAL_RESULTS_FILE)
  out: dict[int, dict[str, object]] = {}
  if not os.path.exists(path):
    return out
  with open(path, 'rb') as f:
    for number, line in enumerate(f, 1):
      line = line.strip()
      if line:
        try:
          record = json.loads(line)
          out[int(record['global_step'])] = record['metrics']
        except (ValueError, KeyError, TypeError) as e:  # a line cut short by a crash
          if (path, number) not in _warned_torn:
            _warned_torn.add((path, number))
            logger.warning('%s line %d is not an evaluation record (%s: %s; cut short by a '
                           'crash?): skipping it', path, number, type(e).__name__, e)
  return out


def _jsonable(v):
  arr = np.asarray(v)
  if arr.ndim == 0:
    return arr.item()
  return arr.tolist()
