"""parse_example and parse specs: TF's own parse of the fixture, the vectorised reader against the
protobuf library on hand-encoded (also non-canonical) Examples, and errors."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import _tf_fixtures as tf_fixtures
import jestimator.columns as fc
from jestimator import io as jio
from jestimator.canned import classifier_parse_example_spec, regressor_parse_example_spec
from jestimator.io import parsing


def fixture_spec(kinds: dict) -> dict:
  return {k: (jio.FixedLenFeature(v['shape'], v['dtype'], v.get('default'))
              if v['kind'] == 'FixedLenFeature' else jio.VarLenFeature(v['dtype']))
          for k, v in kinds.items()}


def fixture_records() -> list[bytes]:
  return list(jio.tfrecord_iterator(tf_fixtures.path('adult_300.tfrecord')))


def test_parse_equals_tf_parse_example():
  fx = tf_fixtures.load('tf_example.json')
  got = jio.parse_example(fixture_records(), fixture_spec(fx['spec']))
  assert sorted(got) == sorted(fx['parsed'])
  for key, want in fx['parsed'].items():
    if key == 'tags':
      indices, values, shape = jio.to_sparse(got[key])
      assert indices.tolist() == want['indices'] and values.tolist() == want['values']
      assert shape.tolist() == want['dense_shape'] and values.dtype == np.int64
      continue
    arr = got[key]
    assert arr.shape == (300, 1)
    if arr.dtype == object:  # strings come back as bytes, as TF's .numpy()
      assert all(isinstance(v, bytes) for v in arr.reshape(-1))
      arr = np.vectorize(lambda b: b.decode('utf-8'), otypes=[object])(arr)
    else:
      assert arr.dtype == np.float32
    assert arr.tolist() == want, key


def test_make_parse_example_spec_equals_tfs():
  want = fixture_spec(tf_fixtures.load('tf_example.json')['make_parse_example_spec'])
  cols = [fc.numeric_column('age'), fc.categorical_column_with_hash_bucket('occupation', 100),
          fc.indicator_column(fc.categorical_column_with_vocabulary_list('workclass',
                                                                           ['Private'])),
          fc.bucketized_column(fc.numeric_column('hours_per_week'), [40])]
  got = fc.make_parse_example_spec(cols)
  assert got == want and list(got) == sorted(want)
  assert cols[1].parse_example_spec == {'occupation': jio.VarLenFeature('string')}


def test_parse_specs_of_composite_columns_and_conflicts():
  w = fc.weighted_categorical_column(fc.categorical_column_with_identity('ids', 10), 'wts')
  cross = fc.crossed_column([fc.categorical_column_with_identity('n', 5), 's'], 100)
  assert fc.make_parse_example_spec([w, cross]) == {
      'ids': jio.VarLenFeature('int64'), 'n': jio.VarLenFeature('int64'),
      's': jio.VarLenFeature('string'), 'wts': jio.VarLenFeature('float32')}
  with pytest.raises(ValueError, match="feature 'x' is parsed as FixedLenFeature.*VarLenFeature"):
    fc.make_parse_example_spec([fc.numeric_column('x'),
                                fc.categorical_column_with_identity('x', 3)])


def test_canned_parse_specs_add_label_and_weight():
  cols = [fc.numeric_column('age')]
  spec = classifier_parse_example_spec(cols, 'y', label_dtype=str, weight_column='w')
  assert spec == {'age': jio.FixedLenFeature([1], 'float32'),
                  'w': jio.FixedLenFeature([1], 'float32'), 'y': jio.FixedLenFeature([1], 'string')}
  reg = regressor_parse_example_spec(cols, 'y', label_dimension=2, label_default=0.5)
  assert reg['y'] == jio.FixedLenFeature([2], 'float32', [0.5, 0.5])
  with pytest.raises(ValueError, match="label_key 'age' is also read by the feature columns"):
    classifier_parse_example_spec(cols, 'age')


# -- hand-made wire bytes: the vectorised reader must agree with protobuf on every encoding ------
def varint(v: int) -> bytes:
  v &= 2 ** 64 - 1
  out = bytearray()
  while True:
    b, v = v & 0x7F, v >> 7
    out.append(b | (0x80 if v else 0))
    if not v:
      return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
  head = varint(number << 3 | wire)
  return head + (varint(len(payload)) + payload if wire == 2 else payload)


def feature_bytes(kind: str, values: list, packed: bool) -> bytes:
  if kind == 'bytes':
    body = b''.join(field(1, 2, v) for v in values)
    return field(1, 2, body)
  if kind == 'float':
    if packed:
      body = field(1, 2, struct.pack(f'<{len(values)}f', *values)) if values else b''
    else:
      body = b''.join(field(1, 5, struct.pack('<f', v)) for v in values)
    return field(2, 2, body)
  if packed:
    body = field(1, 2, b''.join(varint(v) for v in values)) if values else b''
  else:
    body = b''.join(field(1, 0, varint(v)) for v in values)
  return field(3, 2, body)


def random_example(rng: np.random.Generator) -> bytes:
  entries = []
  for key, kind in (('f', 'float'), ('i', 'int'), ('s', 'bytes'), ('v', 'int'), ('w', 'bytes')):
    if rng.random() < 0.15:
      continue  # absent
    n = 2 if key in 'fis' else int(rng.integers(0, 4))
    if kind == 'float':
      values = rng.normal(size=n).astype(np.float32).tolist()
    elif kind == 'int':
      values = rng.integers(-2 ** 40, 2 ** 40, size=n).tolist() + ([-1] if n else [])
      values = values[:n] if key == 'i' else values
    else:
      values = [bytes(rng.integers(0, 256, size=int(rng.integers(0, 12))).astype(np.uint8))
                for _ in range(n)]
    value = feature_bytes(kind, values, packed=bool(rng.random() < 0.7))
    if rng.random() < 0.2:
      value += field(9, 0, varint(7))  # an unknown field inside Feature
    entry = field(1, 2, key.encode()) + field(2, 2, value)
    if rng.random() < 0.2:
      entry = field(2, 2, value) + field(1, 2, key.encode())  # value before key
    entries.append(field(1, 2, entry))
    if rng.random() < 0.1:  # the same key again: the later entry wins
      entries.append(field(1, 2, field(1, 2, key.encode()) + field(2, 2, value)))
  rng.shuffle(entries)
  body = b''.join(entries)
  if rng.random() < 0.2 and len(entries) > 1:  # Features split over two fields: they merge
    half = len(entries) // 2
    return field(1, 2, b''.join(entries[:half])) + field(1, 2, b''.join(entries[half:]))
  return field(1, 2, body) + (field(15, 2, b'junk') if rng.random() < 0.1 else b'')


SPEC = {'f': jio.FixedLenFeature([2], 'float32', [1.5, -2.0]),
        'i': jio.FixedLenFeature([2], 'int64', 9), 's': jio.FixedLenFeature([2], str, 'zz'),
        'v': jio.VarLenFeature('int64'), 'w': jio.VarLenFeature('string')}


def assert_same(a: dict, b: dict):
  assert sorted(a) == sorted(b)
  for k in a:
    if isinstance(SPEC[k], jio.VarLenFeature):
      assert [x.tolist() for x in a[k]] == [x.tolist() for x in b[k]], k
    else:
      assert a[k].dtype == b[k].dtype and a[k].tolist() == b[k].tolist(), k


def parse_with_protobuf(records, spec):
  collected = parsing._collect_proto(records, list(spec))
  return {k: parsing._assemble(k, spec[k], *collected[k], len(records)) for k in spec}


@pytest.mark.parametrize('seed', range(4))
def test_vectorised_reader_equals_protobuf_on_varied_encodings(seed):
  rng = np.random.default_rng(seed)
  records = [random_example(rng) for _ in range(400)]
  fast = jio.parse_example(records, SPEC)
  assert_same(fast, parse_with_protobuf(records, SPEC))
  # and the fast reader really ran (no silent fallback on these valid encodings)
  assert parsing._wire.collect(records, list(SPEC)) is not None


def test_values_written_by_protobuf_parse_back():
  ex = jio.example_pb.Example()
  fmap = ex.features.feature
  fmap['f'].float_list.value.extend([0.25, -3.0])
  fmap['i'].int64_list.value.extend([-(2 ** 63), 2 ** 63 - 1])
  fmap['s'].bytes_list.value.extend([b'a\x00b', 'é'.encode()])
  fmap['v'].int64_list.value.extend([])
  fmap['w'].bytes_list.value.extend([b'', b'x\x00'])  # a value ending in NUL survives
  got = jio.parse_example([ex.SerializeToString(), b''], SPEC)
  assert got['f'].tolist() == [[0.25, -3.0], [1.5, -2.0]]
  assert got['i'].tolist() == [[-(2 ** 63), 2 ** 63 - 1], [9, 9]]
  assert got['s'].tolist() == [[b'a\x00b', 'é'.encode()], [b'zz', b'zz']]
  assert [x.tolist() for x in got['v']] == [[], []]
  assert [x.tolist() for x in got['w']] == [[b'', b'x\x00'], []]


def test_parse_errors_name_the_feature_and_record():
  good = jio.make_examples({'a': np.array([[1.0], [2.0]], np.float32), 'b': ['x', 'y']})
  spec = {'a': jio.FixedLenFeature([1], 'float32')}
  missing = jio.make_examples({'b': ['z']})
  with pytest.raises(ValueError, match=r"feature 'a' is required but record 2 does not have it"):
    jio.parse_example(good + missing, spec)
  with pytest.raises(ValueError, match=r"feature 'a' of record 0 has 1 values but FixedLenFeature "
                                       r'shape \[2\] needs 2'):
    jio.parse_example(good, {'a': jio.FixedLenFeature([2], 'float32')})
  with pytest.raises(ValueError, match=r"feature 'b' of record 0 is a bytes_list but the spec says "
                                       r'int64'):
    jio.parse_example(good, {'b': jio.VarLenFeature('int64')})
  with pytest.raises(ValueError, match='record 1 is not a serialized tf.train.Example'):
    jio.parse_example([good[0], b'\x0a\xff\xff'], spec)
  with pytest.raises(TypeError, match='record 0 must be bytes'):
    jio.parse_example(['text'], spec)
  with pytest.raises(TypeError, match='a single value'):
    jio.parse_example(good[0], spec)
  with pytest.raises(TypeError, match=r"features\['a'\] must be a FixedLenFeature"):
    jio.parse_example(good, {'a': 'float32'})
  with pytest.raises(TypeError, match='dtype must be float32, int64 or string'):
    jio.FixedLenFeature([1], 'float64')
  with pytest.raises(ValueError, match=r'default_value has 3 values but shape \[2\] needs 2'):
    jio.FixedLenFeature([2], 'float32', [1, 2, 3])


def test_empty_batch():
  got = jio.parse_example([], SPEC)
  assert got['f'].shape == (0, 2) and got['v'].shape == (0,)


def test_entry_without_value_at_the_end_of_the_batch():
  key = 'k' * 40  # longer than the padding a varint read needs
  record = field(1, 2, field(1, 2, field(1, 2, key.encode())))  # a map entry with a key only
  got = jio.parse_example([record], {key: jio.VarLenFeature('int64'),
                                     'x': jio.FixedLenFeature([], 'float32', 2.5)})
  assert [v.tolist() for v in got[key]] == [[]] and got['x'].tolist() == [2.5]
