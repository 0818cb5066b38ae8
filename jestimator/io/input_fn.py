"""`tfrecord_input_fn`: a resumable, shardable Estimator input over TFRecord files of Examples.

Order of records (a pure function of the arguments and the epoch, so a position is enough to
resume): each epoch visits this process's files (in sorted order, or permuted by `(seed, epoch)`
when shuffling); each file is read in windows of `shuffle_buffer_size` consecutive records, and a
window's records are emitted in an order permuted by `(seed, epoch, file, window)` when shuffling.
Batches run across file and epoch boundaries (as `numpy_input_fn`): only the very last batch of a
finite input may be short.

Position: `get_state()` gives the epoch, the file, the byte offset of the current window and how
many of its records were emitted; `set_state` seeks there (GZIP files are decompressed up to
there), rebuilds the same window and skips what was emitted. The Estimator saves it in every
checkpoint, so training resumes mid-file exactly, in a new process too.

Sharding (`InputContext` with several input pipelines): with at least as many files as pipelines
each process reads files `i, i + n, ...` (TF's FILE auto-shard policy), else every process reads
all files and keeps records `i, i + n, ...` of each (DATA policy).
"""
from __future__ import annotations

import glob
import os
from typing import Any, Mapping, Sequence

import numpy as np

from jestimator.io import parsing, tfrecord

_FORMAT = 1


def expand_files(file_pattern: str | Sequence[str], name: str = 'tfrecord_input_fn') -> list[str]:
  """The files a path, glob or list of them names (each glob sorted); errors name `name`."""
  patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else list(file_pattern)
  if not patterns:
    raise ValueError(f'{name}: file_pattern is empty')
  files = []
  for p in patterns:
    p = os.fspath(p)
    found = sorted(glob.glob(p)) if glob.has_magic(p) else ([p] if os.path.isfile(p) else [])
    if not found:
      raise ValueError(f'{name}: no file matches {p!r}')
    files.extend(found)
  return files


def _spec_of(features: Any, label_key: str | None) -> dict:
  if isinstance(features, Mapping):
    spec = parsing.check_spec(features, 'tfrecord_input_fn')
  else:
    cols = [features] if hasattr(features, 'parse_example_spec') else list(features)
    if not cols or not all(hasattr(c, 'parse_example_spec') for c in cols):
      raise TypeError(f'tfrecord_input_fn: features must be a parse spec {{key: FixedLenFeature | '
                      f'VarLenFeature}} or a list of feature columns, got {features!r:.100}')
    spec = parsing.merge_parse_specs([c.parse_example_spec for c in cols], 'tfrecord_input_fn')
  if label_key is not None and label_key not in spec:
    raise ValueError(f"tfrecord_input_fn: label_key '{label_key}' is not in the parse spec (keys "
                     f'{sorted(spec)}); for feature columns build the spec with '
                     'jestimator.canned.classifier_parse_example_spec / '
                     'regressor_parse_example_spec')
  return spec


def check_reading_args(name: str, batch_size: Any, shuffle_buffer_size: Any, num_epochs: Any,
                       shuffle: Any) -> None:
  """Validates the arguments every file input_fn shares (errors name `name`)."""
  for arg, v in (('batch_size', batch_size), ('shuffle_buffer_size', shuffle_buffer_size)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
      raise ValueError(f'{name}: {arg} must be a positive int, got {v!r}')
  if num_epochs is not None and (isinstance(num_epochs, bool) or
                                 not isinstance(num_epochs, (int, np.integer)) or num_epochs <= 0):
    raise ValueError(f'{name}: num_epochs must be None or a positive int, got {num_epochs!r}')
  if not isinstance(shuffle, bool):
    raise ValueError(f'{name}: shuffle must be True or False, got {shuffle!r}')


class TFRecordInputFn:
  """The input_fn `tfrecord_input_fn` returns; calling it gives a `TFRecordIterator`."""

  def __init__(self, files: list[str], spec: dict, label_key: str | None, batch_size: int,
               num_epochs: int | None, shuffle: bool, compression: str | None, seed: int | None,
               shuffle_buffer_size: int):
    self.files, self.spec, self.label_key = files, spec, label_key
    self.batch_size, self.num_epochs, self.shuffle = batch_size, num_epochs, shuffle
    self.compression, self.seed, self.shuffle_buffer_size = compression, seed, shuffle_buffer_size

  def __call__(self, config: Any = None, input_context: Any = None) -> TFRecordIterator:
    """A fresh iterator; `seed=None` shuffles with `config.random_seed` (0 without a config)."""
    n = getattr(input_context, 'num_input_pipelines', 1) or 1
    i = getattr(input_context, 'input_pipeline_id', 0) or 0
    seed = self.seed if self.seed is not None else (getattr(config, 'random_seed', None) or 0)
    return self.make_iterator(int(seed), int(n), int(i))

  def make_iterator(self, seed: int, num_pipelines: int, pipeline_id: int) -> TFRecordIterator:
    """The iterator of one input pipeline (subclasses return their own iterator type)."""
    return TFRecordIterator(self, seed, num_pipelines, pipeline_id)


class _Window:
  """Up to `size` consecutive records of one file, in emission order."""

  def __init__(self, records: list[bytes], next_offset: int, next_index: int, eof: bool):
    self.records, self.eof = records, eof
    self.next_offset, self.next_index = next_offset, next_index


class TFRecordIterator:
  """Yields `(features, labels)` (or `features` without `label_key`) batches; resumable.

  Subclasses for other record files (`csv_input_fn`) override `_load_window` and `_parse`.
  """
  _NAME = 'tfrecord_input_fn'

  def __init__(self, fn: TFRecordInputFn, seed: int, num_pipelines: int, pipeline_id: int):
    self._fn, self._seed = fn, seed
    if len(fn.files) >= num_pipelines:
      self._files, self._stride, self._phase = fn.files[pipeline_id::num_pipelines], 1, 0
    else:
      self._files, self._stride, self._phase = fn.files, num_pipelines, pipeline_id
    self._fingerprint = (f'files={fn.files},spec={sorted(fn.spec.items())},label={fn.label_key},'
                         f'bs={fn.batch_size},epochs={fn.num_epochs},shuffle={fn.shuffle},'
                         f'buffer={fn.shuffle_buffer_size},seed={seed},compression='
                         f'{fn.compression},shard={pipeline_id}/{num_pipelines}')
    self._epoch = self._file = self._offset = self._index = self._taken = 0
    self._window: _Window | None = None
    self._reader: tfrecord.TFRecordReader | None = None
    self._emitted_in_epoch = 0

  # ----------------------------------------------------------------------------- position
  def get_state(self) -> dict[str, Any]:
    """JSON-ready position after the last batch returned."""
    return {'format': _FORMAT, 'fingerprint': self._fingerprint, 'epoch': self._epoch,
            'file': self._file, 'window_offset': self._offset, 'window_index': self._index,
            'offset': self._taken, 'emitted_in_epoch': self._emitted_in_epoch}

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Moves to a position from `get_state` (of an iterator of the same input_fn and shard)."""
    if state.get('fingerprint') != self._fingerprint:
      raise ValueError('input state belongs to a different input_fn '
                       f'({state.get("fingerprint")!r:.200} vs {self._fingerprint!r:.200})')
    self._epoch, self._file = int(state['epoch']), int(state['file'])
    self._offset, self._index = int(state['window_offset']), int(state['window_index'])
    self._taken, self._emitted_in_epoch = int(state['offset']), int(state['emitted_in_epoch'])
    self._window = None
    self._close_reader()

  def at_end(self) -> bool:
    """Whether the next `next()` raises StopIteration."""
    return self._advance() is None

  # ----------------------------------------------------------------------------- reading
  def _file_order(self) -> list[int]:
    order = np.arange(len(self._files))
    if self._fn.shuffle:
      order = np.random.default_rng([self._seed, self._epoch]).permutation(len(self._files))
    return order.tolist()

  def _close_reader(self):
    if self._reader is not None:
      self._reader.close()
      self._reader = None

  def _load_window(self) -> _Window:
    fn = self._fn
    file_id = self._file_order()[self._file]
    if self._reader is None or self._reader.path != self._files[file_id] or \
        self._reader.offset != self._offset:
      self._close_reader()
      self._reader = tfrecord.TFRecordReader(self._files[file_id], fn.compression)
      if self._offset:
        self._reader.seek(self._offset, self._index)
    records, size, eof = [], fn.shuffle_buffer_size, False
    first = self._index
    while len(records) < size:
      r = self._reader.read()
      if r is None:
        eof = True
        break
      records.append(r)
    if self._stride > 1:  # DATA sharding: this process keeps records i, i + n, ... of the file
      keep = (np.arange(first, first + len(records)) % self._stride) == self._phase
      records = [r for r, k in zip(records, keep) if k]
    if fn.shuffle and len(records) > 1:
      perm = np.random.default_rng([self._seed, self._epoch, file_id, first]).permutation(
          len(records))
      records = [records[j] for j in perm]
    return _Window(records, self._reader.offset, self._reader.index, eof)

  def _advance(self) -> _Window | None:
    """The window holding the next record (moving past spent windows, files and epochs), or
    None at the end of a finite input. Moving never changes which record comes next."""
    fn = self._fn
    while True:
      if fn.num_epochs is not None and self._epoch >= fn.num_epochs:
        return None
      if self._window is None:
        self._window = self._load_window()
      w = self._window
      if self._taken < len(w.records):
        return w
      self._window, self._taken = None, 0
      if not w.eof:
        self._offset, self._index = w.next_offset, w.next_index
        continue
      self._close_reader()
      self._offset = self._index = 0
      self._file += 1
      if self._file >= len(self._files):
        if self._emitted_in_epoch == 0:
          if fn.num_epochs is None:
            raise ValueError(f'{self._NAME}: the files {self._files[:3]}... hold no records '
                             'for this input pipeline; with num_epochs=None this would never end')
          self._epoch = fn.num_epochs  # nothing to read at all
          return None
        self._epoch, self._file, self._emitted_in_epoch = self._epoch + 1, 0, 0

  def _parse(self, batch: list) -> dict[str, np.ndarray]:
    return parsing.parse_example(batch, self._fn.spec)

  def __iter__(self) -> TFRecordIterator:
    return self

  def __next__(self):
    fn = self._fn
    batch: list[bytes] = []
    while len(batch) < fn.batch_size:
      w = self._advance()
      if w is None:
        break
      take = w.records[self._taken:self._taken + fn.batch_size - len(batch)]
      batch.extend(take)
      self._taken += len(take)
      self._emitted_in_epoch += len(take)
    if not batch:
      self._close_reader()
      raise StopIteration
    features = self._parse(batch)
    if fn.label_key is None:
      return features
    return features, features.pop(fn.label_key)


def tfrecord_input_fn(file_pattern: str | Sequence[str], features: Any,
                      label_key: str | None = None, batch_size: int = 128,
                      num_epochs: int | None = 1, shuffle: bool = True,
                      compression: str | None = None, seed: int | None = None,
                      shuffle_buffer_size: int = 10_000) -> TFRecordInputFn:
  """An Estimator input_fn over TFRecord files of serialized `tf.train.Example`s.

  Args:
    file_pattern: a path, a glob (`'data/train-*.tfrecord'`) or a list of them; files are read in
      sorted order.
    features: a parse spec `{key: FixedLenFeature | VarLenFeature}` (e.g. from
      `jestimator.canned.classifier_parse_example_spec`) or a list of feature columns (their
      `make_parse_example_spec`).
    label_key: the spec key holding the labels (popped from the features); None for predict.
    batch_size: records per batch; with finite `num_epochs` only the last batch may be short.
    num_epochs: passes over the files; None repeats forever.
    shuffle: permute the file order per epoch and records within windows of
      `shuffle_buffer_size` (see the module docstring); False reads records in file order.
    compression: None or 'GZIP' (as TF's `compression_type`).
    seed: shuffle seed; None uses `RunConfig.seed` of the Estimator calling it.
    shuffle_buffer_size: records per shuffle window (memory: that many serialized records).

  Returns:
    A callable input_fn (taking `config`, `input_context`); its iterators parse in the
    Estimator's prefetch thread (off the training thread), save their position in checkpoints
    and read only this process's shard.

  Example:
    spec = classifier_parse_example_spec(cols, label_key='label')
    est.train(tfrecord_input_fn('train-*.tfrecord', spec, label_key='label', num_epochs=None),
              max_steps=10_000)
  """
  files = expand_files(file_pattern)
  spec = _spec_of(features, label_key)
  check_reading_args('tfrecord_input_fn', batch_size, shuffle_buffer_size, num_epochs, shuffle)
  compression = tfrecord.check_compression(compression, 'tfrecord_input_fn')
  return TFRecordInputFn(files, spec, label_key, int(batch_size),
                         None if num_epochs is None else int(num_epochs), shuffle, compression,
                         None if seed is None else int(seed), int(shuffle_buffer_size))
