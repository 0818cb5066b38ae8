"""`csv_input_fn`: TF's `make_csv_dataset` / `TextLineDataset` + `decode_csv` as a resumable,
shardable Estimator input.

Records are lines, as in TF (`TextLineDataset` splits on newlines, so a quoted field cannot hold
one); blank lines are skipped. Each batch's lines are parsed at once by the `csv` module (C) and
each column is converted with one numpy `astype`, so no Python code runs per row on the hot path.

Order, shuffling, sharding and resumption are those of `tfrecord_input_fn` (this iterator is its
subclass, reading windows of `shuffle_buffer_size` lines instead of records): a checkpoint holds
the epoch, the file, the byte offset and line number of the current window and how many of its
lines were used, so `train()` in a new process continues with exactly the next batch. With
several input pipelines each process reads its own files (at least as many files as processes),
else its own lines `i, i + n, ...` of every file.

Column defaults follow `tf.io.decode_csv`'s `record_defaults`: a value (or `[value]`, TF's usual
spelling) gives the column's dtype and the value an empty field (or `na_value`) takes; `[]` or a
dtype marks the column required, so an empty field is an error. Every error names the file, the
line and the column.
"""
from __future__ import annotations

import csv
import io
import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from jestimator.io import input_fn as file_inputs

_NAME = 'csv_input_fn'
_DTYPES = {'float32': np.float32, 'float64': np.float64, 'int32': np.int32, 'int64': np.int64,
           'string': object}
_INFER_ROWS = 100  # TF's make_csv_dataset num_rows_for_inference


class Column:
  """One selected CSV column: its name, index in the record, dtype and default (None: required)."""

  def __init__(self, name: str, index: int, dtype: str, default: Any):
    self.name, self.index, self.dtype, self.default = name, index, dtype, default

  def describe(self) -> str:
    return f'{self.name}@{self.index}:{self.dtype}={self.default!r}'


def _dtype_name(d: Any) -> str | None:
  """'float32' & co for a dtype spelling (np.float32, 'float32', str, bytes), else None."""
  if d in (str, bytes, 'string', 'str', np.str_, np.bytes_, object):
    return 'string'
  try:
    name = np.dtype(d).name
  except TypeError:
    return None
  return name if name in _DTYPES else None


def _default_of(spec: Any, column: str) -> tuple[str, Any]:
  """`(dtype, default or None if required)` of one `column_defaults` entry (TF's rules)."""
  if isinstance(spec, (list, tuple, np.ndarray)) and not isinstance(spec, str):
    items = list(spec)
    if not items:
      return 'float32', None  # TF: an empty float32 tensor marks a required column
    if len(items) != 1:
      raise ValueError(f"{_NAME}: column_defaults for column '{column}' must be a value, [value], "
                       f'[] (required) or a dtype, got {spec!r}')
    spec = items[0]
  if isinstance(spec, type) or isinstance(spec, np.dtype) or spec == 'string':
    name = _dtype_name(spec)
    if name is None:
      raise ValueError(f"{_NAME}: column '{column}': dtype {spec!r} is not one of "
                       f'{sorted(_DTYPES)}')
    return name, None
  if isinstance(spec, (str, bytes)):
    return 'string', spec.decode() if isinstance(spec, bytes) else spec
  if isinstance(spec, (bool, np.bool_)):
    raise ValueError(f"{_NAME}: column '{column}': a bool default is not a CSV dtype")
  if isinstance(spec, np.generic):
    name = _dtype_name(spec.dtype)
    if name is None:
      raise ValueError(f"{_NAME}: column '{column}': default of dtype {spec.dtype} is not one of "
                       f'{sorted(_DTYPES)}')
    return name, spec.item()
  if isinstance(spec, int):
    return 'int32', spec  # TF: a Python int default makes an int32 column
  if isinstance(spec, float):
    return 'float32', spec
  raise ValueError(f"{_NAME}: column_defaults for column '{column}' must be a value, [value], [] "
                   f'(required) or a dtype, got {spec!r}')


def _first_lines(path: str, n: int) -> list[str]:
  with open(path, 'rb') as f:
    lines = [line.decode('utf-8') for line in itertools.islice(f, n)]
  return [line for line in lines if line.strip()]


def _infer(path: str, names: list[str], header: bool, delim: str,
           na_value: str) -> list[tuple[str, Any]]:
  """TF's type inference over the first rows: int32, int64, float32, float64, else string;
  every column optional with default 0 or ''."""
  rows = list(csv.reader(_first_lines(path, _INFER_ROWS + int(header))[int(header):],
                         delimiter=delim))
  out = []
  for i, name in enumerate(names):
    values = np.array([r[i] for r in rows if i < len(r) and r[i] not in ('', na_value)] or ['0'])
    for dtype in ('int32', 'int64', 'float32', 'float64'):
      if _parses(values, dtype):
        out.append((dtype, 0))
        break
    else:
      out.append(('string', ''))
  return out


class CSVInputFn(file_inputs.TFRecordInputFn):
  """The input_fn `csv_input_fn` returns; calling it (`config`, `input_context`, as
  `tfrecord_input_fn`'s) gives a `CSVIterator`."""

  def __init__(self, files: list[str], columns: list[Column], num_fields: int,
               label_key: str | None, batch_size: int, num_epochs: int | None, shuffle: bool,
               seed: int | None, shuffle_buffer_size: int, header: bool, field_delim: str,
               na_value: str):
    # The columns stand in for the parse spec in the iterator's fingerprint.
    super().__init__(files, {c.name: c.describe() for c in columns}, label_key, batch_size,
                     num_epochs, shuffle, None, seed, shuffle_buffer_size)
    self.columns, self.num_fields, self.header = columns, num_fields, header
    self.field_delim, self.na_value = field_delim, na_value

  def make_iterator(self, seed: int, num_pipelines: int, pipeline_id: int) -> CSVIterator:
    return CSVIterator(self, seed, num_pipelines, pipeline_id)


class _LineReader:
  """Lines of one file from a byte offset; `index` counts physical lines (the header too)."""

  def __init__(self, path: str, header: bool):
    self.path, self._header = path, header
    self._f = open(path, 'rb')
    self.offset = self.index = 0

  def seek(self, offset: int, index: int) -> None:
    self._f.seek(offset)
    self.offset, self.index = offset, index

  def read_lines(self, n: int) -> list[bytes]:
    if self.index == 0 and self._header:
      self._f.readline()
      self.index = 1
    lines = list(itertools.islice(self._f, n))
    if lines and not lines[-1].endswith(b'\n'):  # a file's last line may lack its newline
      lines[-1] += b'\n'
    self.index += len(lines)
    self.offset = self._f.tell()
    return lines

  def close(self) -> None:
    self._f.close()


class CSVIterator(file_inputs.TFRecordIterator):
  """Yields `(features, labels)` (or `features` without a label) batches of CSV lines; resumable."""
  _NAME = _NAME

  def __init__(self, fn: CSVInputFn, seed: int, num_pipelines: int, pipeline_id: int):
    super().__init__(fn, seed, num_pipelines, pipeline_id)
    self._fingerprint = (f'csv:{self._fingerprint},header={fn.header},delim={fn.field_delim!r},'
                         f'na={fn.na_value!r}')

  def _load_window(self) -> file_inputs._Window:
    fn = self._fn
    file_id = self._file_order()[self._file]
    path = self._files[file_id]
    r = self._reader
    if r is None or r.path != path or r.offset != self._offset:
      self._close_reader()
      r = self._reader = _LineReader(path, fn.header)
      r.seek(self._offset, self._index)
    lines = r.read_lines(fn.shuffle_buffer_size)
    eof = len(lines) < fn.shuffle_buffer_size
    line_no = np.arange(r.index - len(lines), r.index) + 1  # 1-based, as editors count
    text = np.array(lines, dtype=np.bytes_)
    keep = np.char.str_len(np.char.strip(text)) > 0  # blank lines are skipped
    if self._stride > 1:  # DATA sharding: this process keeps lines i, i + n, ... of the file
      keep &= (line_no - 1) % self._stride == self._phase
    order = np.flatnonzero(keep)
    if fn.shuffle and len(order) > 1:
      order = np.random.default_rng([self._seed, self._epoch, file_id, int(line_no[0])]).permutation(
          order)
    records = list(zip(itertools.repeat(file_id), line_no[order].tolist(),
                       text[order].tolist()))
    return file_inputs._Window(records, r.offset, r.index, eof)

  def _parse(self, batch: list) -> dict[str, np.ndarray]:
    fn = self._fn
    file_ids, line_nos, lines = zip(*batch)
    rows = list(csv.reader(io.StringIO(b''.join(lines).decode('utf-8')), delimiter=fn.field_delim))
    where = lambda j: f'{self._files[file_ids[j]]}:{line_nos[j]}'  # noqa: E731
    if len(rows) != len(lines):
      raise ValueError(f'{_NAME}: {where(0)}...: a quoted field spans lines (TF reads one record '
                       'per line)')
    counts = np.fromiter(map(len, rows), np.int64, len(rows))
    bad = np.flatnonzero(counts != fn.num_fields)
    if bad.size:
      j = int(bad[0])
      raise ValueError(f'{_NAME}: {where(j)}: expected {fn.num_fields} fields, got {counts[j]}')
    fields = list(zip(*rows))
    out = {}
    for col in fn.columns:
      raw = np.array(fields[col.index], dtype=str)
      missing = (raw == '') | (raw == fn.na_value)
      if col.default is None and missing.any():
        j = int(np.flatnonzero(missing)[0])
        raise ValueError(f"{_NAME}: {where(j)}: column '{col.name}' (field {col.index}) is "
                         'required (its default is [] or a dtype) but the field is empty')
      if col.dtype == 'string':
        out[col.name] = np.where(missing, col.default, raw).astype(object)
        continue
      filled = np.where(missing, '0', raw)
      try:
        values = filled.astype(_DTYPES[col.dtype])
      except (ValueError, OverflowError):
        j = next(j for j, v in enumerate(filled) if not _parses(v, col.dtype))
        raise ValueError(f"{_NAME}: {where(j)}: column '{col.name}' (field {col.index}): "
                         f'{str(raw[j])!r} is not a valid {col.dtype}') from None
      values[missing] = col.default
      out[col.name] = values
    return out


def _parses(v: str | np.ndarray, dtype: str) -> bool:
  """Whether fields convert (numpy's int cast rejects '1.5' as TF's int parser does)."""
  try:
    np.asarray(v).reshape(-1).astype(_DTYPES[dtype])
    return True
  except (ValueError, OverflowError):
    return False


def csv_input_fn(file_pattern: str | Sequence[str], batch_size: int = 128,
                 column_names: Sequence[str] | None = None,
                 column_defaults: Sequence[Any] | Mapping[str, Any] | None = None,
                 label_name: str | None = None, select_columns: Sequence[Any] | None = None,
                 field_delim: str = ',', na_value: str = '', header: bool = True,
                 num_epochs: int | None = None, shuffle: bool = True,
                 shuffle_buffer_size: int = 10_000, shuffle_seed: int | None = None
                 ) -> CSVInputFn:
  """An Estimator input_fn over CSV files: TF's `tf.data.experimental.make_csv_dataset`
  (argument names and defaults), also what `TextLineDataset` + `decode_csv` programs do.

  Args:
    file_pattern: a path, a glob or a list of them (each glob sorted).
    batch_size: lines per batch; with finite `num_epochs` only the last batch may be short.
    column_names: the names of the record's fields; None reads them from the first file's header.
    column_defaults: one entry per selected column (per field without `select_columns`), as
      `decode_csv`'s `record_defaults`: a value or `[value]` (its type is the column's dtype:
      float -> float32, int -> int32, str -> string; numpy scalars keep theirs), `[]` (a required
      float32) or a dtype (required). A dict `{name: entry}` is also accepted. None infers the
      dtypes from the first 100 rows (defaults 0 / '').
    label_name: the column returned as the labels (popped from the features).
    select_columns: names or indices of the fields to keep (default: all).
    field_delim: the field separator.
    na_value: a field equal to it is missing (takes the default), as an empty field.
    header: whether each file's first line is a header (skipped).
    num_epochs: passes over the files; None repeats forever (TF's default).
    shuffle: permute the file order per epoch and lines within windows of
      `shuffle_buffer_size` consecutive lines (see `tfrecord_input_fn`).
    shuffle_buffer_size: lines per shuffle window.
    shuffle_seed: None uses `RunConfig.seed` of the Estimator calling it.

  Returns:
    An input_fn (taking `config`, `input_context`) whose iterators yield `(features, labels)`
    with `features` a dict of `[batch]` numpy arrays (strings as `str` objects), save their
    position in checkpoints and read only this process's shard.

  Example:
    est.train(csv_input_fn('adult.data', 40, column_names=COLUMNS, column_defaults=DEFAULTS,
                           label_name='income_bracket', header=False), max_steps=1000)
  """
  files = file_inputs.expand_files(file_pattern, _NAME)
  file_inputs.check_reading_args(_NAME, batch_size, shuffle_buffer_size, num_epochs, shuffle)
  if not isinstance(field_delim, str) or len(field_delim) != 1:
    raise ValueError(f'{_NAME}: field_delim must be one character, got {field_delim!r}')
  if column_names is None:
    if not header:
      raise ValueError(f'{_NAME}: column_names is None and header=False: the column names must '
                       'come from somewhere')
    first = _first_lines(files[0], 1)
    if not first:
      raise ValueError(f'{_NAME}: {files[0]} is empty; cannot read a header')
    column_names = next(csv.reader(first, delimiter=field_delim))
  names = [str(n) for n in column_names]
  if len(set(names)) != len(names):
    raise ValueError(f'{_NAME}: column_names has duplicates: {names}')
  if select_columns is None:
    selected = list(range(len(names)))
  else:
    selected = []
    for s in select_columns:
      if isinstance(s, (int, np.integer)) and 0 <= s < len(names):
        selected.append(int(s))
      elif isinstance(s, str) and s in names:
        selected.append(names.index(s))
      else:
        raise ValueError(f'{_NAME}: select_columns entry {s!r} is not a column name or index '
                         f'of {names}')
    selected = sorted(set(selected))
  sel_names = [names[i] for i in selected]
  if column_defaults is None:
    inferred = _infer(files[0], names, header, field_delim, na_value)
    kinds = [inferred[i] for i in selected]
  else:
    if isinstance(column_defaults, Mapping):
      unknown = sorted(set(column_defaults) - set(sel_names))
      missing = [n for n in sel_names if n not in column_defaults]
      if unknown or missing:
        raise ValueError(f'{_NAME}: column_defaults keys must be the selected columns; unknown '
                         f'{unknown}, missing {missing}')
      column_defaults = [column_defaults[n] for n in sel_names]
    if len(column_defaults) != len(selected):
      raise ValueError(f'{_NAME}: column_defaults has {len(column_defaults)} entries for '
                       f'{len(selected)} selected columns {sel_names}')
    kinds = [_default_of(d, n) for d, n in zip(column_defaults, sel_names)]
  columns = [Column(names[i], i, dtype, default)
             for i, (dtype, default) in zip(selected, kinds)]
  if label_name is not None and label_name not in sel_names:
    raise ValueError(f"{_NAME}: label_name '{label_name}' is not a selected column "
                     f'({sel_names})')
  return CSVInputFn(files, columns, len(names), label_name, int(batch_size),
                    None if num_epochs is None else int(num_epochs), shuffle,
                    None if shuffle_seed is None else int(shuffle_seed), int(shuffle_buffer_size),
                    bool(header), field_delim, str(na_value))


__all__ = ['csv_input_fn', 'CSVInputFn', 'CSVIterator']
