"""Pieces of export and serving on their own: tensor files, input checks, REST formats, batcher."""
import json
import struct
import threading
import time

import ml_dtypes
import numpy as np
import pytest

from jestimator._serving import rest
from jestimator._serving.batcher import Batcher
from jestimator.export import _device_inputs, _tensors, signatures
from jestimator.export import raw_features as raw_lib
from jestimator.export import served_model
from jestimator.export.serving_input import build_raw_serving_input_fn


# -- tensor files ---------------------------------------------------------------------------------
def test_tensor_file_round_trip_in_safetensors_layout(tmp_path):
  arrays = {'params/Dense_0/kernel': np.arange(6, dtype=np.float32).reshape(2, 3),
            'b': np.array([1, -2], np.int64), 'h': np.array([1.5], ml_dtypes.bfloat16),
            'flag': np.array([True, False])}
  path = str(tmp_path / 'v.safetensors')
  _tensors.write(path, arrays, {'global_step': 7})
  back = _tensors.read(path)
  assert set(back) == set(arrays)
  for k, v in arrays.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape
    np.testing.assert_array_equal(back[k], v)
  # The layout by hand: u64 header length, JSON header, raw little-endian data.
  blob = open(path, 'rb').read()
  (n,) = struct.unpack('<Q', blob[:8])
  header = json.loads(blob[8:8 + n])
  assert header['__metadata__'] == {'global_step': '7'}
  assert header['b'] == {'dtype': 'I64', 'shape': [2], 'data_offsets': [0, 16]}
  begin, end = header['params/Dense_0/kernel']['data_offsets']
  assert np.frombuffer(blob[8 + n + begin:8 + n + end], '<f4').tolist() == list(range(6))


def test_tensor_file_errors(tmp_path):
  with pytest.raises(TypeError, match="array 'c' of dtype complex64"):
    _tensors.write(str(tmp_path / 'x'), {'c': np.zeros(2, np.complex64)})
  (tmp_path / 'bad').write_bytes(b'\x01')
  with pytest.raises(ValueError, match='not a tensor file'):
    _tensors.read(str(tmp_path / 'bad'))


# -- raw input checks -----------------------------------------------------------------------------
SPEC = build_raw_serving_input_fn({'x': ('float32', [2]), 'n': (np.int64, []),
                                   's': (str, [])})().features


def test_normalize_casts_and_reshapes():
  out, n = raw_lib.normalize({'x': [[1, 2], [3, 4]], 'n': [1.0, 2.0], 's': ['a', 'b'], 'z': 5}, SPEC)
  assert n == 2 and set(out) == {'x', 'n', 's'}
  assert out['x'].dtype == np.float32 and out['n'].dtype == np.int64
  out, _ = raw_lib.normalize({'x': [[1, 2]], 'n': [[3]], 's': [['a']]}, SPEC)
  assert out['n'].shape == (1,) and out['s'].shape == (1,)  # [batch, 1] for per-example []


@pytest.mark.parametrize('raw, error, fragment', [
    ({'x': [[1, 2]], 'n': [1]}, ValueError, r"missing feature\(s\) \['s'\]"),
    ({'x': [['a', 'b']], 'n': [1], 's': ['a']}, TypeError, "feature 'x' must hold float32"),
    ({'x': [[1, 2]], 'n': [1.5], 's': ['a']}, TypeError, "feature 'n' must hold integers"),
    ({'x': [[1, 2]], 'n': [1], 's': [3]}, TypeError, "feature 's' must hold strings"),
    ({'x': [[1, 2, 3]], 'n': [1], 's': ['a']}, ValueError, r"'x' must have shape \[batch, 2\]"),
    ({'x': [[1, 2]], 'n': [1, 2], 's': ['a']}, ValueError, 'unequal list lengths'),
    ({'x': [[1, 2]], 'n': 1, 's': ['a']}, ValueError, "feature 'n' needs one value per example"),
    ({'x': [], 'n': [], 's': []}, ValueError, 'no examples'),
])
def test_normalize_errors_name_the_feature(raw, error, fragment):
  with pytest.raises(error, match=fragment):
    raw_lib.normalize(raw, SPEC)


def test_normalize_for_feature_columns_keeps_what_the_host_stage_reads():
  # Categorical features may carry several values per example and None for missing values: the
  # feature columns parse them, so the checks let them through unchanged.
  out, n = raw_lib.normalize({'x': [[1, None]], 'n': [[1, 2]], 's': [['a', 'b']]}, SPEC,
                          host_parses=True)
  assert n == 1 and out['s'].shape == (1, 2) and out['x'].dtype == object
  with pytest.raises(TypeError, match="feature 's' must hold strings"):
    raw_lib.normalize({'x': [[1, 2]], 'n': [1], 's': [1]}, SPEC, host_parses=True)


def test_serving_input_spec_spellings():
  spec = build_raw_serving_input_fn({'a': ('float32', 3), 'b': {'dtype': 'string', 'shape': [],
                                                                'multivalent': True}})().features
  assert spec == {'a': {'dtype': 'float32', 'shape': [3], 'multivalent': False},
                  'b': {'dtype': 'string', 'shape': [], 'multivalent': True}}
  with pytest.raises(ValueError, match='non-empty dict'):
    build_raw_serving_input_fn({})


def test_batch_buckets():
  assert [served_model._bucket(n) for n in (1, 2, 3, 7, 8, 9, 1000, 1024)] == [
      1, 2, 4, 8, 8, 16, 1024, 1024]


def test_string_outputs_from_vocabularies_and_decimal_ids():
  out = signatures.finish(
      {'classes': np.array([[0, 1]], np.int32), 'class_ids': np.array([[1]], np.int32)},
      {'classes': {'ids_key': 'classes', 'vocabulary': None},
       'names': {'ids_key': 'class_ids', 'vocabulary': ['no', 'yes']}})
  assert out['classes'].tolist() == [[b'0', b'1']] and out['names'].tolist() == [[b'yes']]
  assert out['class_ids'].tolist() == [[1]]


# -- REST formats ---------------------------------------------------------------------------------
def test_rows_columns_context_and_b64():
  inputs = {'a': {}, 'b': {}}
  cols, rows = rest.predict_columns({'instances': [{'a': 1, 'b': {'b64': 'aGk='}},
                                                   {'a': 2, 'b': 'x'}]}, inputs)
  assert rows and cols == {'a': [1, 2], 'b': [b'hi', 'x']}
  cols, rows = rest.predict_columns({'inputs': [1, 2]}, {'a': {}})
  assert not rows and cols == {'a': [1, 2]}
  cols = rest.examples_columns({'examples': [{'a': 1}, {'a': 2, 'b': 'own'}],
                                'context': {'b': 'shared'}}, inputs)
  assert cols == {'a': [1, 2], 'b': ['shared', 'own']}
  with pytest.raises(rest.RequestError, match="instance 1 is missing feature 'b'"):
    rest.predict_columns({'instances': [{'a': 1, 'b': 2}, {'a': 1}]}, inputs)
  with pytest.raises(rest.RequestError, match='b64'):
    rest.predict_columns({'instances': [{'a': 1, 'b': {'x': 1}}]}, inputs)


def test_responses_follow_tf_serving():
  out = {'classes': np.array([[b'no', b'yes']], object), 'scores': np.array([[0.25, 0.75]])}
  assert rest.predict_response(out, True) == {
      'predictions': [{'classes': ['no', 'yes'], 'scores': [0.25, 0.75]}]}
  assert rest.predict_response({'y': np.array([1.5, 2.5])}, True) == {'predictions': [1.5, 2.5]}
  assert rest.predict_response({'y': np.array([1.5])}, False) == {'outputs': [1.5]}
  assert rest.classify_response(out) == {'results': [[['no', 0.25], ['yes', 0.75]]]}
  assert rest.regress_response({'outputs': np.array([[0.5], [2.0]])}) == {'results': [0.5, 2.0]}


# -- batcher --------------------------------------------------------------------------------------
def test_batcher_merges_concurrent_requests_and_isolates_failures():
  calls = []
  gate = threading.Event()

  def run(features, n):
    calls.append(n)
    gate.wait(5)  # hold the first batch so the others queue up behind it
    if np.any(features['v'] < 0):
      raise ValueError('negative value')
    return {'double': features['v'] * 2}

  batcher = Batcher(max_batch_size=100)
  results = {}

  def client(i):
    try:
      results[i] = batcher.submit(
          run, 's', {'v': np.array([i, i], np.int64) * (-1 if i == 3 else 1)}, 2)
    except ValueError as e:
      results[i] = e

  threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
  threads[0].start()
  deadline = time.monotonic() + 5
  while not calls and time.monotonic() < deadline:
    time.sleep(0.001)
  for t in threads[1:]:
    t.start()
  time.sleep(0.2)
  gate.set()
  for t in threads:
    t.join(5)
  batcher.close()
  for i in range(6):
    if i == 3:
      assert isinstance(results[i], ValueError)
    else:
      assert results[i]['double'].tolist() == [2 * i, 2 * i]
  assert calls[0] == 2 and calls[1] == 10  # the five waiting requests ran as one batch...
  assert len(calls) == 2 + 5  # ...which failed, so each ran alone to find the bad one


def test_device_inputs_sharing_a_width_are_padded_with_the_host_padding():
  doc = {'a/ids': {'dtype': 'int32', 'shape': [-1, -1], 'dims': ['b', 'd0'], 'pads': {'1': -1}},
         'b': {'dtype': 'float32', 'shape': [-1, -1, 2], 'dims': ['b', 'd0', None],
               'pads': {'1': 0.5}},
         'c': {'dtype': 'int32', 'shape': [-1], 'dims': ['b'], 'pads': {}}}
  out = _device_inputs.align({'a/ids': np.array([[3], [4]], np.int64),
                              'b': np.ones((2, 4, 2), np.float32), 'c': np.array([1, 2])}, doc)
  assert out['a/ids'].tolist() == [[3, -1, -1, -1], [4, -1, -1, -1]]
  assert out['a/ids'].dtype == np.int32 and out['b'].shape == (2, 4, 2)
  with pytest.raises(ValueError, match=r"feature 'b'.*shape \[2, 4, 3\]"):
    _device_inputs.align({'a/ids': np.zeros((2, 1)), 'b': np.zeros((2, 4, 3)),
                          'c': np.zeros(2)}, doc)
