"""The REST server: TF Serving's API on 127.0.0.1 (random port), errors, batching, the CLI."""
import http.client
import os
import random
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from _export_models import estimator_predict, make_raw
from _http import call as _call, wait_until_serving
from jestimator._serving.server import ModelServer

pytestmark = pytest.mark.slow

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_KEYS = ('age', 'color', 'city', 'k')


@pytest.fixture(scope='module')
def served(models):
  """`(server, estimator, raw pool, Estimator.predict on the pool)` for the binary DNN."""
  est, path = models.get('dnn')
  # The exporter-style folder (model_dir/export): the server picks the newest export in it.
  server = ModelServer(os.path.dirname(path), 'census', port=0, max_batch_size=64).start()
  pool = make_raw(64, seed=3)
  expected = estimator_predict(est, pool)
  yield server, est, pool, expected
  server.stop()


def _value(v):
  return v.item() if isinstance(v, np.generic) else v


def _rows(pool, idx):
  return [{k: _value(pool[k][i]) for k in _KEYS} for i in idx]


def test_status_and_metadata(served):
  server, _, _, _ = served
  code, status = _call(server.port, 'GET', '/v1/models/census')
  assert code == 200
  (entry,) = status['model_version_status']
  assert entry['state'] == 'AVAILABLE' and entry['status']['error_code'] == 'OK'
  assert entry['version'] == str(server.model.version)
  code, meta = _call(server.port, 'GET', f'/v1/models/census/versions/{entry["version"]}/metadata')
  assert code == 200
  assert meta['model_spec']['name'] == 'census'
  defs = meta['metadata']['signature_def']['signature_def']
  assert {k: v['method_name'] for k, v in defs.items()} == {
      'serving_default': 'tensorflow/serving/classify',
      'classification': 'tensorflow/serving/classify',
      'regression': 'tensorflow/serving/regress', 'predict': 'tensorflow/serving/predict'}
  inputs = defs['serving_default']['inputs']
  assert {k: v['dtype'] for k, v in inputs.items()} == {
      'age': 'DT_FLOAT', 'color': 'DT_STRING', 'city': 'DT_STRING'}
  assert [d['size'] for d in inputs['age']['tensor_shape']['dim']] == ['-1', '1']
  outputs = defs['serving_default']['outputs']
  assert outputs['classes']['dtype'] == 'DT_STRING' and outputs['scores']['dtype'] == 'DT_FLOAT'
  assert [d['size'] for d in outputs['scores']['tensor_shape']['dim']] == ['-1', '2']


def test_predict_row_and_columnar_formats(served):
  server, _, pool, expected = served
  idx = [0, 1, 2]
  code, body = _call(server.port, 'POST', '/v1/models/census:predict',
                     {'instances': _rows(pool, idx), 'signature_name': 'predict'})
  assert code == 200
  preds = body['predictions']
  assert len(preds) == 3
  for i, p in zip(idx, preds):
    np.testing.assert_allclose(p['probabilities'], expected['probabilities'][i], atol=1e-6)
    assert p['classes'] == [expected['classes'][i][0].decode()]
  code, body = _call(server.port, 'POST', '/v1/models/census:predict',
                     {'inputs': {k: [_value(pool[k][i]) for i in idx] for k in _KEYS}})
  assert code == 200  # serving_default: classes and scores, columnar
  np.testing.assert_allclose(body['outputs']['scores'], expected['probabilities'][idx], atol=1e-6)
  assert body['outputs']['classes'] == [['no', 'yes']] * 3


def test_classify_and_regress(served):
  server, _, pool, expected = served
  rows = _rows(pool, [4, 5])
  context = {'k': rows[0].pop('k')}
  rows[1].pop('k')  # both examples take k from the context
  pool_k = dict(pool, k=np.full_like(pool['k'], context['k']))
  exp = estimator_predict(served[1], {k: v[4:6] for k, v in pool_k.items()})
  code, body = _call(server.port, 'POST', '/v1/models/census:classify',
                     {'examples': rows, 'context': context})
  assert code == 200
  for result, probs in zip(body['results'], exp['probabilities']):
    assert [label for label, _ in result] == ['no', 'yes']
    np.testing.assert_allclose([s for _, s in result], probs, atol=1e-6)
  code, body = _call(server.port, 'POST', '/v1/models/census:regress',
                     {'examples': rows, 'context': context})
  assert code == 200  # the binary head's regression signature is the logistic
  np.testing.assert_allclose(body['results'], exp['logistic'][:, 0], atol=1e-6)


@pytest.mark.parametrize('body, fragment', [
    ({'instances': [{'age': 30, 'color': 'red'}]}, "missing feature 'city'"),
    ({'inputs': {'age': ['old'], 'color': ['red'], 'city': ['c1'], 'k': [1]}},
     "feature 'age' must hold float32"),
    ({'inputs': {'age': [[1, 2]], 'color': ['red'], 'city': ['c1'], 'k': [1]}},
     "feature 'age' must have shape [batch, 1]"),
    ({'inputs': {'age': [30, 40], 'color': ['red'], 'city': ['c1', 'c2'], 'k': [1, 2]}},
     'unequal list lengths'),
    ('{"instances": [', 'JSON Parse error'),
    ({'instances': [{'age': 30, 'color': 'red', 'city': 'c1', 'k': 1}], 'signature_name': 'nope'},
     "no signature 'nope'"),
    ({'examples': []}, 'exactly one of "instances"'),
])
def test_bad_requests_get_400_and_the_server_keeps_serving(served, body, fragment):
  server, _, pool, expected = served
  raw = body if isinstance(body, str) else None
  code, reply = _call(server.port, 'POST', '/v1/models/census:predict',
                      None if raw else body, raw=raw)
  assert code == 400 and set(reply) == {'error'}
  assert fragment in reply['error'], reply['error']
  code, reply = _call(server.port, 'POST', '/v1/models/census:predict',
                      {'instances': _rows(pool, [7])})
  assert code == 200
  np.testing.assert_allclose(reply['predictions'][0]['scores'], expected['probabilities'][7],
                             atol=1e-6)


def test_unknown_model_and_wrong_verbs(served):
  server = served[0]
  assert _call(server.port, 'GET', '/v1/models/other')[0] == 404
  assert _call(server.port, 'POST', '/v1/models/census/versions/1:predict', {})[0] == 404
  assert _call(server.port, 'GET', '/v1/models/census:predict')[0] == 405
  code, reply = _call(server.port, 'POST', '/v1/models/census:regress',
                      {'examples': [{'age': 1}], 'signature_name': 'classification'})
  assert code == 400 and 'not tensorflow/serving/regress' in reply['error']


def test_concurrent_clients_get_correct_answers_in_merged_batches(served):
  server, _, pool, expected = served
  before = server.batcher.batches_run
  errors = []

  def client(seed):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
    try:
      for _ in range(100):
        idx = [rng.randrange(64) for _ in range(rng.randint(1, 3))]
        code, body = _call(server.port, 'POST', '/v1/models/census:predict',
                           {'instances': _rows(pool, idx)}, conn=conn)
        scores = np.array([p['scores'] for p in body['predictions']]) if code == 200 else None
        if code != 200 or not np.allclose(scores, expected['probabilities'][idx], atol=1e-6):
          errors.append((seed, code, body))
    finally:
      conn.close()

  threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=120)
  assert not errors, errors[:3]
  assert server.batcher.batches_run - before < 800  # some requests were scored together


def test_cli_serves_an_exporter_folder(models):
  _, path = models.get('dnn')
  env = dict(os.environ, PYTHONPATH=_REPO)
  proc = subprocess.Popen(
      [sys.executable, '-m', 'jestimator.serve', '--export_dir', os.path.dirname(path),
       '--model_name', 'cli', '--port', '0', '--warmup', ''],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  killer = threading.Timer(120, lambda: os.kill(proc.pid, signal.SIGKILL))
  killer.start()
  try:
    port, line = wait_until_serving(proc)
    assert f'{path}' in line
    code, status = _call(port, 'GET', '/v1/models/cli')
    assert code == 200 and status['model_version_status'][0]['version'] == os.path.basename(path)
    code, body = _call(port, 'POST', '/v1/models/cli:predict',
                       {'instances': [{'age': 30.0, 'color': 'red', 'city': 'c1'}]})
    assert code == 200 and body['predictions'][0]['classes'] == ['no', 'yes']
  finally:
    killer.cancel()
    os.kill(proc.pid, signal.SIGKILL)  # jax swallows SIGTERM
    proc.wait(timeout=30)
    proc.stdout.close()
