"""The REST server under hostile or careless clients (issue 13): framing, chunked bodies, bounds
and timeouts, deep JSON, strict types, the NaN policy, quiet disconnects, bounded batch shapes,
and export integrity (manifest, vocabularies inside the export)."""
import hashlib
import json
import os
import shutil
import socket
import struct

import numpy as np
import pytest

from _export_models import make_raw
from _http import call, exchange
from jestimator import export
from jestimator.serve import ModelServer

pytestmark = pytest.mark.slow
_X = make_raw(8, seed=6)['x']


@pytest.fixture(scope='module')
def server(models):
  _, path = models.get('custom')
  s = ModelServer(path, 'm', port=0, read_timeout_s=1.0, max_connections=8, warmup=()).start()
  yield s
  s.stop()


def _body(idx=(0,)):
  return json.dumps({'instances': [{'x': _X[i].tolist()} for i in idx]}).encode()


def _responses(data: bytes) -> list[bytes]:
  return [line for line in data.split(b'\r\n') if line.startswith(b'HTTP/1.')]


_SMUGGLED = b'GET /v1/models/other HTTP/1.1\r\nHost: x\r\n\r\n'


@pytest.mark.parametrize('headers, status', [
    (b'Content-Length: abc\r\n', b'400'),
    (b'Content-Length: -5\r\n', b'400'),
    (b'Content-Length: 5\r\nContent-Length: 6\r\n', b'400'),
    (b'Content-Length: 999999999999\r\n', b'413'),
    (b'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', b'400'),
    (b'Transfer-Encoding: gzip\r\n', b'501'),
    (b'', b'411'),
])
def test_framing_errors_answer_once_and_close_the_connection(server, headers, status):
  data = exchange(server.port, b'POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n' + headers +
                  b'\r\n' + _SMUGGLED)
  assert _responses(data) == [b'HTTP/1.1 ' + status + b' ' + data.split(b' ', 2)[2].split(
      b'\r\n')[0]], data  # one answer: the smuggled request is never read
  assert b'Connection: close' in data and b'<timeout' not in data


def _chunked(body: bytes, sizes=(7, 1, 100000)) -> bytes:
  out, pos = b'', 0
  for n in sizes:
    part = body[pos:pos + n]
    if not part:
      break
    out += b'%x;ext=1\r\n%s\r\n' % (len(part), part)
    pos += len(part)
  return out + b'0\r\nTrailer: t\r\n\r\n'


def test_chunked_bodies_are_decoded(server):
  expected = export.load(server.model.path).predict({'x': _X[:2]})['probability']
  req = (b'POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
         _chunked(_body((0, 1))))
  data = exchange(server.port, req + b'GET /v1/models/m HTTP/1.1\r\nHost: x\r\n'
                  b'Connection: close\r\n\r\n')
  first, second = data.split(b'HTTP/1.1 ')[1:]
  assert first.startswith(b'200') and second.startswith(b'200')  # keep-alive continues
  preds = json.loads(first.split(b'\r\n\r\n', 1)[1])['predictions']
  np.testing.assert_allclose([p['probability'] for p in preds], expected, atol=1e-6)
  bad = exchange(server.port, b'POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n'
                 b'Transfer-Encoding: chunked\r\n\r\nzz\r\n' + _SMUGGLED)
  assert len(_responses(bad)) == 1 and _responses(bad)[0].startswith(b'HTTP/1.1 400')


def test_stalled_clients_time_out_and_connections_are_bounded(server):
  assert server.httpd.request_queue_size >= 32  # the listen backlog
  held = [socket.create_connection(('127.0.0.1', server.port), timeout=30) for _ in range(8)]
  try:
    for s in held:  # half a request each: they hold the 8 allowed connections
      s.sendall(b'POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"ins')
    refused = exchange(server.port, b'GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n')
    assert refused.startswith(b'HTTP/1.1 503'), refused
    for s in held:  # the read timeout (1 s) closes each stalled connection without an answer
      assert s.recv(100) == b''
  finally:
    for s in held:
      s.close()
  assert call(server.port, 'GET', '/v1/models/m')[0] == 200


def test_deeply_nested_json_is_a_400(server):
  deep = b'{"instances": ' + b'[' * 50000 + b']' * 50000 + b'}'
  code, body = call(server.port, 'POST', '/v1/models/m:predict', raw=deep)
  assert code == 400 and 'nested too deeply' in body['error']
  assert call(server.port, 'POST', '/v1/models/m:predict', raw=_body())[0] == 200


@pytest.mark.parametrize('instances, fragment', [
    ([{'age': True, 'color': 'red', 'city': 'c1'}], "feature 'age' must hold float32 numbers, "
                                                    'got the boolean True'),
    ([{'age': 30, 'color': 'red', 'city': 'c1'}, {'age': 31, 'color': 'red', 'city': 1}],
     "feature 'city' must hold strings, got the number 1"),
    ([{'age': 31, 'color': 'red', 'city': 1}], "feature 'city' must hold strings"),
])
def test_feature_types_are_checked_strictly(models, instances, fragment):
  _, path = models.get('dnn')
  s = ModelServer(path, 'd', port=0, warmup=()).start()
  try:
    code, body = call(s.port, 'POST', '/v1/models/d:predict', {'instances': instances})
  finally:
    s.stop()
  assert code == 400 and fragment in body['error'], body


@pytest.mark.parametrize('policy', ['nan', 'null', 'error'])
def test_nan_policy(models, policy):
  _, path = models.get('custom')
  s = ModelServer(path, 'm', port=0, warmup=(), nan_policy=policy).start()
  raw = b'{"instances": [{"x": [NaN, 0, 0, 0]}, {"x": [1, 0, 0, 0]}]}'
  try:
    code, text = call(s.port, 'POST', '/v1/models/m:predict', raw=raw, parse=bytes.decode)
  finally:
    s.stop()
  def strict(c):
    raise ValueError(f'not strict JSON: {c}')
  if policy == 'nan':  # TF Serving's output: NaN tokens
    assert code == 200 and 'NaN' in text
    assert np.isnan(json.loads(text)['predictions'][0]['probability'])
  elif policy == 'null':
    preds = json.loads(text, parse_constant=strict)['predictions']
    assert code == 200 and preds[0]['probability'] is None
    assert isinstance(preds[1]['probability'], float)
  else:
    assert code == 400 and "output 'logits' holds NaN" in json.loads(text)['error']


def test_disconnecting_clients_leave_no_tracebacks(models, capfd):
  _, path = models.get('custom')
  server = ModelServer(path, 'm', port=0, warmup=()).start()
  body = _body(range(8))
  try:
    for _ in range(20):
      s = socket.create_connection(('127.0.0.1', server.port))
      s.sendall(b'POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n' % len(body)
                + body)
      s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
      s.close()  # reset before the answer is written
    assert call(server.port, 'GET', '/v1/models/m')[0] == 200
    assert server.httpd.drain(60)  # every reset connection's request has finished
  finally:
    server.stop()
  err = capfd.readouterr().err
  assert 'Traceback' not in err and 'BrokenPipe' not in err, err


def test_batch_shapes_stay_bounded(models):
  _, path = models.get('custom')
  s = ModelServer(path, 'm', port=0, warmup=(), max_batch_size=4096,
                  max_body_bytes=64 << 20).start()
  x = make_raw(3000, seed=9)['x']
  model = export.load(path)
  try:
    for n in list(range(1, 41)) + [1500, 3000]:  # 40 distinct sizes, then two above the cap
      code, body = call(s.port, 'POST', '/v1/models/m:predict',
                        {'inputs': {'x': x[:n].tolist()}})
      assert code == 200 and len(body['outputs']['probability']) == n
    compiled = s.model.compiled_batch_sizes()['serving_default']
  finally:
    s.stop()
  # 1500 rows run as 1024 + 476 (padded to 512), 3000 as 1024 + 1024 + 952 (padded to 1024).
  assert compiled == [1, 2, 4, 8, 16, 32, 64, 512, 1024]
  assert len(compiled) <= 11  # the documented bound: powers of two up to 1024
  expected = np.concatenate([model.predict({'x': x[i:i + 7]})['probability']
                             for i in range(0, 3000, 7)])
  np.testing.assert_allclose(body['outputs']['probability'], expected, atol=1e-5)


# -- export integrity -----------------------------------------------------------------------------
def _reseal(path):
  """Rewrites manifest.json over the files now present (an attacker who rewrites it too)."""
  files = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path)
                 for f in fs if f != 'manifest.json' or d != path)
  digests = {f: hashlib.sha256(open(os.path.join(path, f), 'rb').read()).hexdigest()
             for f in files}
  with open(os.path.join(path, 'manifest.json'), 'w') as f:
    json.dump({'algorithm': 'sha256', 'files': digests}, f)


@pytest.fixture
def wide_copy(models, tmp_path):
  _, path = models.get('wide_deep')
  copy = str(tmp_path / '5')
  shutil.copytree(path, copy)
  return copy


def test_manifest_lists_every_file_and_tampering_fails_the_load(wide_copy):
  with open(os.path.join(wide_copy, 'manifest.json')) as f:
    listed = json.load(f)['files']
  names = list(listed)
  on_disk = sorted(os.path.relpath(os.path.join(d, f), wide_copy)
                   for d, _, fs in os.walk(wide_copy) for f in fs)
  assert sorted(names + ['manifest.json']) == on_disk
  for name, digest in listed.items():
    assert hashlib.sha256(open(os.path.join(wide_copy, name), 'rb').read()).hexdigest() == digest
  (vocab,) = [n for n in listed if n.startswith('assets/')]
  with open(os.path.join(wide_copy, vocab), 'a') as f:
    f.write('injected\n')
  with pytest.raises(ValueError, match=rf'{vocab} does not match its SHA-256'):
    export.load(wide_copy)


def test_added_or_missing_files_and_missing_manifest_fail_the_load(wide_copy):
  with open(os.path.join(wide_copy, 'assets', 'extra.txt'), 'w') as f:
    f.write('x')
  with pytest.raises(ValueError, match='extra.txt is not listed'):
    export.load(wide_copy)
  os.remove(os.path.join(wide_copy, 'assets', 'extra.txt'))
  export.load(wide_copy)
  os.remove(os.path.join(wide_copy, 'manifest.json'))
  with pytest.raises(ValueError, match='has no manifest.json'):
    export.load(wide_copy)


@pytest.mark.parametrize('vocab', ['/etc/passwd', '../../colors.txt', 'assets/../../x.txt'])
def test_vocabulary_paths_outside_the_export_are_rejected(wide_copy, vocab):
  file = os.path.join(wide_copy, 'columns.json')
  text = open(file).read()
  assert '"assets/' in text  # the vocabulary was copied into the export
  doc = json.loads(text)

  def repoint(node):
    if isinstance(node, dict):
      if node.get('column') == 'VocabularyFileCategoricalColumn':
        node['vocabulary_file'] = vocab
      for v in node.values():
        repoint(v)
    elif isinstance(node, list):
      for v in node:
        repoint(v)
  repoint(doc)
  with open(file, 'w') as f:
    json.dump(doc, f)
  _reseal(wide_copy)
  with pytest.raises(ValueError, match="vocabulary_file .* (is not a path inside|points outside)"):
    export.load(wide_copy)


def test_exports_do_not_need_the_original_vocabulary_file(models, wide_copy):
  os.rename(models.vocab_file, models.vocab_file + '.away')
  try:
    model = export.load(wide_copy)
    raw = make_raw(4, seed=2)
    assert model.predict({k: raw[k] for k in ('age', 'color', 'city')})['scores'].shape == (4, 2)
  finally:
    os.rename(models.vocab_file + '.away', models.vocab_file)
