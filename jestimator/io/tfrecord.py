"""TFRecord files: reading (every record's masked CRC32C checked) and writing, plain or GZIP.

A TFRecord file is a sequence of records, each (integers little endian)

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

with `masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2**32)`, `c = crc32c(x)`. A
GZIP file is such a stream compressed with gzip (TF's `compression_type='GZIP'`). CRC32C comes from
`google-crc32c` (a C implementation). TensorFlow is not needed.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from typing import BinaryIO, Iterator

import google_crc32c

_HEADER = struct.Struct('<QI')
_FOOTER = struct.Struct('<I')
_MASK_DELTA = 0xA282EAD8
COMPRESSIONS = (None, 'GZIP')
# A record's data is read in pieces of at most this many bytes, so a header that declares a huge
# length (damage, or a hostile file) costs memory only for the bytes that are really there.
_PIECE = 16 << 20
# What a damaged GZIP stream raises from `gzip` (bad header or trailer, bad deflate data, or a
# stream cut short); reported as DataLossError naming the file and the record.
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


class DataLossError(ValueError):
  """A TFRecord file is truncated or a record fails its CRC check (TF's `DataLossError`)."""


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC32C of `data`."""
  c = google_crc32c.value(data)
  return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def check_compression(compression: str | None, what: str) -> str | None:
  """None (plain) or 'GZIP'; '' means None, as in TF. Anything else is a ValueError."""
  if compression == '':
    return None
  if isinstance(compression, str) and compression.upper() == 'GZIP':
    return 'GZIP'
  if compression is not None:
    raise ValueError(f"{what}: compression must be None or 'GZIP', got {compression!r}")
  return None


def _open(path: str, mode: str, compression: str | None) -> BinaryIO:
  if compression == 'GZIP':
    return gzip.open(path, mode)
  return open(path, mode)


class _File:
  """A context manager closing `self._f`."""
  _f: BinaryIO

  def close(self) -> None:
    self._f.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class TFRecordReader(_File):
  """Reads the records of one file in order; `offset` is the position (in the uncompressed
  stream) of the next record, and `seek(offset)` returns there, so a reader can resume.

  `read()` returns the next record's bytes, or None at the end of the file. A truncated record or
  a CRC mismatch raises `DataLossError` naming the file, the record and its offset.
  """

  def __init__(self, path: str, compression: str | None = None, check_crc: bool = True):
    self.path = os.fspath(path)
    self._compression = check_compression(compression, 'TFRecordReader')
    self._check = check_crc
    self._f = _open(self.path, 'rb', self._compression)
    # The plain file's size bounds a record's declared length before anything is allocated.
    self._size = None if self._compression else os.fstat(self._f.fileno()).st_size
    self.offset = 0
    self.index = 0  # index of the next record (counted from where the reader started or seeked)

  def seek(self, offset: int, index: int = 0) -> None:
    """Moves to byte `offset` of the uncompressed stream, which must start a record (record number
    `index`, used in error messages). GZIP streams are decompressed up to there."""
    self.offset, self.index = offset, index
    try:
      self._f.seek(offset)
    except _GZIP_ERRORS as e:
      raise self._corrupt(f'damaged GZIP stream ({type(e).__name__}: {e})') from e

  def _corrupt(self, why: str) -> DataLossError:
    return DataLossError(f'corrupted TFRecord file {self.path!r}: record {self.index} at offset '
                         f'{self.offset}: {why}')

  def read(self) -> bytes | None:
    try:
      return self._read()
    except _GZIP_ERRORS as e:
      raise self._corrupt(f'damaged GZIP stream ({type(e).__name__}: {e})') from e

  def _read(self) -> bytes | None:
    header = self._f.read(12)
    if not header:
      return None
    if len(header) < 12:
      raise self._corrupt(f'truncated header ({len(header)} of 12 bytes)')
    length, length_crc = _HEADER.unpack(header)
    if self._check and masked_crc32c(header[:8]) != length_crc:
      raise self._corrupt('length CRC mismatch')
    if self._size is not None and length + 4 > self._size - self.offset - 12:
      raise self._corrupt(f'truncated data: the header declares {length} data bytes and a '
                          f'4-byte CRC, but only {self._size - self.offset - 12} bytes remain in '
                          'the file')
    body = self._read_up_to(length + 4)
    if len(body) < length + 4:
      raise self._corrupt(f'truncated data ({len(body)} of {length + 4} bytes)')
    data = body[:length]
    if self._check and masked_crc32c(data) != _FOOTER.unpack(body[length:])[0]:
      raise self._corrupt('data CRC mismatch')
    self.offset += 16 + length
    self.index += 1
    return data

  def _read_up_to(self, n: int) -> bytes:
    """Up to `n` bytes (fewer at the end of the stream), read piecewise (see `_PIECE`)."""
    if n <= _PIECE:
      return self._f.read(n)
    pieces, got = [], 0
    while got < n:
      piece = self._f.read(min(_PIECE, n - got))
      if not piece:
        break
      pieces.append(piece)
      got += len(piece)
    return b''.join(pieces)


def tfrecord_iterator(path: str, compression: str | None = None) -> Iterator[bytes]:
  """Yields the records of a TFRecord file (as `tf.compat.v1.io.tf_record_iterator`).

  `compression`: None or 'GZIP'. Every record's length and data CRCs are checked; a truncated
  file or a corrupted record raises `DataLossError` (a ValueError) naming the file and the
  record. Example: `[parse_example([r], spec) for r in tfrecord_iterator('train.tfrecord')]`.
  """
  with TFRecordReader(path, compression) as reader:
    while (record := reader.read()) is not None:
      yield record


class TFRecordWriter(_File):
  """Writes records to a TFRecord file (as `tf.io.TFRecordWriter`); a context manager.

  Example::

    with TFRecordWriter('data.tfrecord.gz', compression='GZIP') as w:
      for ex in examples:
        w.write(ex.SerializeToString())
  """

  def __init__(self, path: str, compression: str | None = None):
    self.path = os.fspath(path)
    self._f = _open(self.path, 'wb', check_compression(compression, 'TFRecordWriter'))

  def write(self, record: bytes) -> None:
    """Appends one record (bytes)."""
    if not isinstance(record, (bytes, bytearray, memoryview)):
      raise TypeError(f'TFRecordWriter.write takes bytes, got {type(record).__name__}')
    record = bytes(record)
    length = struct.pack('<Q', len(record))
    self._f.write(length + struct.pack('<I', masked_crc32c(length)) + record +
                  struct.pack('<I', masked_crc32c(record)))
