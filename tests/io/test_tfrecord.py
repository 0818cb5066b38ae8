"""TFRecord files: TF's fixture read plain and GZIP, byte-identical writing, corruption errors."""
from __future__ import annotations

import gzip
import shutil

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
