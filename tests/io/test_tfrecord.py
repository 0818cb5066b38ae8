"""TFRecord files: TF's fixture read plain and GZIP, byte-identical writing, corruption errors."""
from __future__ import annotations

import gzip
import shutil
import struct

import pytest

import _tf_fixtures as tf_fixtures
from jestimator import io as jio

PLAIN, GZ = tf_fixtures.path('adult_300.tfrecord'), tf_fixtures.path('adult_300.tfrecord.gz')


def test_plain_and_gzip_read_the_same_records():
  plain = list(jio.tfrecord_iterator(PLAIN))
  assert len(plain) == 300 and all(isinstance(r, bytes) for r in plain)
  assert list(jio.tfrecord_iterator(GZ, compression='GZIP')) == plain
  assert list(jio.tfrecord_iterator(GZ, compression='gzip')) == plain


def test_writer_reproduces_tfs_file_byte_for_byte(tmp_path):
  records = list(jio.tfrecord_iterator(PLAIN))
  out = tmp_path / 'copy.tfrecord'
  assert jio.write_tfrecord(str(out), records) == 300
  with open(PLAIN, 'rb') as f:
    assert out.read_bytes() == f.read()
  gz = tmp_path / 'copy.tfrecord.gz'
  jio.write_tfrecord(str(gz), records, compression='GZIP')
  assert gzip.decompress(gz.read_bytes()) == out.read_bytes()


def _record_offsets(path) -> list[int]:
  reader = jio.TFRecordReader(path)
  offsets = []
  while True:
    offsets.append(reader.offset)
    if reader.read() is None:
      return offsets[:-1]


@pytest.mark.parametrize('where,why', [(20, 'data CRC mismatch'), (3, 'length CRC mismatch'),
                                       (9, 'length CRC mismatch')])
def test_a_flipped_byte_is_an_error_naming_the_record(tmp_path, where, why):
  bad = tmp_path / 'bad.tfrecord'
  shutil.copy(PLAIN, bad)
  data = bytearray(bad.read_bytes())
  start = _record_offsets(str(bad))[17]
  data[start + where] ^= 0x01
  bad.write_bytes(bytes(data))
  it = jio.tfrecord_iterator(str(bad))
  for _ in range(17):
    next(it)  # the records before are fine
  with pytest.raises(jio.DataLossError, match=rf"bad.tfrecord'.*record 17 at offset {start}: "
                                              f'{why}'):
    next(it)
  # also through GZIP
  gz = tmp_path / 'bad.tfrecord.gz'
  gz.write_bytes(gzip.compress(bytes(data)))
  with pytest.raises(ValueError, match=f'record 17 at offset {start}: {why}'):
    list(jio.tfrecord_iterator(str(gz), 'GZIP'))


def test_truncated_file_and_bad_arguments(tmp_path):
  cut = tmp_path / 'cut.tfrecord'
  with open(PLAIN, 'rb') as f:
    cut.write_bytes(f.read()[:-3])
  with pytest.raises(jio.DataLossError, match=r'record 299 at offset \d+: truncated data'):
    list(jio.tfrecord_iterator(str(cut)))
  with pytest.raises(ValueError, match="compression must be None or 'GZIP', got 'ZLIB'"):
    jio.tfrecord_iterator(PLAIN, 'ZLIB').__next__()
  with pytest.raises(TypeError, match='takes bytes'):
    with jio.TFRecordWriter(str(tmp_path / 'x')) as w:
      w.write('text')


def test_reader_seek_resumes_mid_file():
  offsets = _record_offsets(PLAIN)
  records = list(jio.tfrecord_iterator(PLAIN))
  for comp, path in ((None, PLAIN), ('GZIP', GZ)):
    with jio.TFRecordReader(path, comp) as reader:
      reader.seek(offsets[123], 123)
      assert reader.read() == records[123] and reader.index == 124
      assert reader.offset == offsets[124]


@pytest.mark.parametrize('damage', ['cut', 'flip', 'trailer'])
def test_a_damaged_gzip_file_is_a_data_loss_error_naming_the_file_and_record(tmp_path, damage):
  with open(GZ, 'rb') as f:
    data = bytearray(f.read())
  if damage == 'cut':
    data = data[:len(data) // 2]  # was: a bare EOFError from gzip
  elif damage == 'flip':
    data[10:14] = b'\xff' * 4  # the first deflate block's header: was a bare zlib.error
  else:
    data[-8] ^= 0xFF  # the stored CRC32 of the whole stream: was gzip.BadGzipFile
  bad = tmp_path / 'bad.tfrecord.gz'
  bad.write_bytes(bytes(data))
  with pytest.raises(jio.DataLossError, match=r"bad.tfrecord.gz'.*record \d+ at offset \d+: "
                                              'damaged GZIP stream'):
    list(jio.tfrecord_iterator(str(bad), 'GZIP'))
  fn = jio.tfrecord_input_fn(str(bad), {'age': jio.FixedLenFeature([1], 'int64')},
                             compression='GZIP', batch_size=50, shuffle=False)
  with pytest.raises(jio.DataLossError, match=r"bad.tfrecord.gz'.*record \d+ .*damaged GZIP"):
    list(fn())


@pytest.mark.parametrize('compression', [None, 'GZIP'])
def test_a_header_declaring_a_huge_length_is_refused_before_allocating(tmp_path, compression):
  records = list(jio.tfrecord_iterator(PLAIN))[:3]
  good = tmp_path / 'good.tfrecord'
  jio.write_tfrecord(str(good), records)
  data = bytearray(good.read_bytes())
  start = _record_offsets(str(good))[2]
  length = struct.pack('<Q', 1 << 40)  # 1 TiB, with a valid length CRC
  data[start:start + 12] = length + struct.pack('<I', jio.masked_crc32c(length))
  bad = tmp_path / 'huge.tfrecord'
  bad.write_bytes(bytes(data) if compression is None else gzip.compress(bytes(data)))
  # was: an empty MemoryError (the reader allocated the declared 1 TiB)
  why = 'truncated data' + (': the header declares 1099511627776 data bytes' if compression is None
                            else '')
  with pytest.raises(jio.DataLossError, match=rf"huge.tfrecord'.*record 2 at offset {start}: "
                                              f'{why}'):
    list(jio.tfrecord_iterator(str(bad), compression))
