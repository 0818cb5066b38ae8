"""TF Serving behaviour of the server: version policies, hot reload under load, damaged versions,
several models from a config file, Prometheus metrics, graceful SIGTERM, the CLI's flags."""
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _export_models import make_raw
from _http import add_version, call, wait_until_serving
from jestimator import export
from jestimator.serving import config
from jestimator.serving.versions import ModelVersions, VersionPolicy
from jestimator.serve import ModelServer

pytestmark = pytest.mark.slow
_X = make_raw(8, seed=5)['x']


def _instances(idx):
  return [{'x': _X[i].tolist()} for i in idx]


@pytest.fixture(scope='module')
def custom(models):
  """`(export path, in-process predictions of `_X`)` of the custom (raw `x`) model."""
  _, path = models.get('custom')
  return path, export.load(path).predict({'x': _X})['probability']


def _status(port, name='m'):
  code, doc = call(port, 'GET', f'/v1/models/{name}')
  return sorted(int(s['version']) for s in doc['model_version_status']) if code == 200 else code


def test_new_versions_are_served_under_load_and_the_policy_keeps_the_others(custom, tmp_path):
  path, expected = custom
  base = str(tmp_path / 'base')
  os.makedirs(base)
  add_version(path, base, 1)
  server = ModelServer(base, 'm', port=0, version_policy=VersionPolicy('latest', 2),
                       poll_interval_s=0.1, warmup=()).start()
  failures, done, served = [], threading.Event(), [0]

  def client(seed):
    rng = np.random.default_rng(seed)
    while not done.is_set():
      idx = rng.integers(0, len(_X), 2).tolist()
      code, body = call(server.port, 'POST', '/v1/models/m:predict',
                        {'instances': _instances(idx)})
      if code != 200 or not np.allclose([p['probability'] for p in body['predictions']],
                                        expected[idx], atol=1e-6):
        failures.append((code, body))
      served[0] += 1

  def wait_for(versions):
    deadline = time.monotonic() + 60
    while _status(server.port) != versions and time.monotonic() < deadline:
      time.sleep(0.02)
    return _status(server.port)

  threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
  try:
    for t in threads:
      t.start()
    assert wait_for([1]) == [1]
    add_version(path, base, 2)  # a new version appears: loaded, and the old stays (latest 2)
    assert wait_for([1, 2]) == [1, 2]
    assert call(server.port, 'GET', '/v1/models/m/versions/1/metadata')[0] == 200
    add_version(path, base, 3)  # the oldest leaves the policy and is unloaded
    assert wait_for([2, 3]) == [2, 3]
    assert call(server.port, 'POST', '/v1/models/m/versions/1:predict',
                {'instances': _instances([0])})[0] == 404
    code, body = call(server.port, 'POST', '/v1/models/m/versions/2:predict',
                      {'instances': _instances([0])})
    assert code == 200 and np.isclose(body['predictions'][0]['probability'], expected[0])
    shutil.rmtree(os.path.join(base, '3'))  # a removed version is unloaded, 1 comes back
    assert wait_for([1, 2]) == [1, 2]
    code, meta = call(server.port, 'GET', '/v1/models/m/metadata')
    assert meta['model_spec']['version'] == '2'  # the newest serves by default
  finally:
    done.set()
    for t in threads:
      t.join(60)
    server.stop()
  assert not failures, failures[:3]
  assert served[0] > 0


def test_policies_choose_versions(custom, tmp_path):
  path, _ = custom
  base = str(tmp_path / 'b')
  os.makedirs(base)
  for v in (3, 7, 12):
    add_version(path, base, v)
  assert sorted(ModelVersions('m', base).snapshot()) == [12]
  assert sorted(ModelVersions('m', base, VersionPolicy('all')).snapshot()) == [3, 7, 12]
  assert sorted(ModelVersions('m', base, VersionPolicy.parse('specific:3,7')).snapshot()) == [3, 7]
  assert sorted(ModelVersions('m', base, VersionPolicy.parse('latest:2')).snapshot()) == [7, 12]
  with pytest.raises(ValueError, match=r"no servable version .*found \[12, 7, 3\]"):
    ModelVersions('m', base, VersionPolicy.parse('specific:5'))
  for bad in ('latest:0', 'newest', 'specific:', 'all:2'):
    with pytest.raises(ValueError, match='version policy'):
      VersionPolicy.parse(bad)


def _damage(path, file='variables.safetensors'):
  with open(os.path.join(path, file), 'r+b') as f:
    f.seek(-3, os.SEEK_END)
    f.write(b'\x00\x01\x02')


def test_damaged_newest_version_at_startup_serves_the_newest_intact_one(custom, tmp_path,
                                                                         caplog):
  path, _ = custom
  base = str(tmp_path / 'b')
  os.makedirs(base)
  add_version(path, base, 1)
  _damage(add_version(path, base, 2))
  with caplog.at_level(logging.WARNING, logger='jestimator.serve'):
    versions = ModelVersions('m', base)
  assert sorted(versions.snapshot()) == [1]
  (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert 'version 2' in warning and os.path.join(base, '2', 'variables.safetensors') in warning
  _damage(os.path.join(base, '1'))
  with pytest.raises(ValueError, match=r'version 2: .*variables\.safetensors does not match'):
    ModelVersions('m', base)


def test_model_config_file_serves_several_models(custom, models, tmp_path):
  path, expected = custom
  _, dnn_path = models.get('dnn')
  text = f"""
  model_config_list {{
    config {{ name: 'custom' base_path: '{os.path.dirname(path)}' model_platform: 'tensorflow' }}
    config {{
      name: "dnn"
      base_path: "{os.path.dirname(dnn_path)}"
      model_version_policy {{ specific {{ versions: {os.path.basename(dnn_path)} }} }}
    }}
  }}"""
  server = ModelServer(models=config.parse(text), port=0, warmup=()).start()
  try:
    code, body = call(server.port, 'POST', '/v1/models/custom:predict',
                      {'instances': _instances([3])})
    assert code == 200 and np.isclose(body['predictions'][0]['probability'], expected[3])
    assert _status(server.port, 'dnn') == [int(os.path.basename(dnn_path))]
  finally:
    server.stop()
  with pytest.raises(ValueError, match=r"unsupported field\(s\) \['basepath'\]"):
    config.parse("model_config_list { config { name: 'a' basepath: '/x' } }")


def test_metrics_count_requests_by_model_version_api_and_status(custom):
  path, _ = custom
  server = ModelServer(os.path.dirname(path), 'm', port=0, warmup=()).start()
  version = os.path.basename(path)
  try:
    for n in (1, 2, 3):
      assert call(server.port, 'POST', '/v1/models/m:predict',
                  {'instances': _instances(range(n))})[0] == 200
    for _ in range(2):
      assert call(server.port, 'POST', '/v1/models/m:predict', {'instances': [{'y': 1}]})[0] == 400
    assert call(server.port, 'GET', '/v1/models/m')[0] == 200
    assert call(server.port, 'GET', '/v1/models/nope')[0] == 404
    code, text = call(server.port, 'GET', '/monitoring/prometheus/metrics',
                      parse=lambda b: b.decode())
  finally:
    server.stop()
  assert code == 200
  families = {f.name: f for f in text_string_to_metric_families(text)}
  counts = {(s.labels['model_name'], s.labels['version'], s.labels['API'], s.labels['status']):
            s.value for s in families[':tensorflow:serving:request_count'].samples}
  assert counts == {('m', version, 'predict', 'OK'): 3, ('m', version, 'predict',
                                                          'INVALID_ARGUMENT'): 2,
                    ('m', version, 'GetModelStatus', 'OK'): 1,
                    ('nope', '', 'GetModelStatus', 'NOT_FOUND'): 1}
  latency = {s.labels['API']: s.value for s in families[':tensorflow:serving:request_latency']
             .samples if s.name.endswith('_count') and s.labels['model_name'] == 'm'}
  assert latency == {'predict': 5, 'GetModelStatus': 1}
  batch = {s.name.rsplit('_', 1)[-1]: s.value
           for s in families[':tensorflow:serving:batch_size'].samples
           if not s.name.endswith('_bucket')}
  assert batch == {'sum': 1 + 2 + 3, 'count': 3}  # sequential requests: one batch each


def _serve_cli(args, env=None):
  script = os.path.join(os.path.dirname(sys.executable), 'jestimator-serve')
  return subprocess.Popen([script] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)


def test_cli_tf_serving_flags_and_graceful_sigterm(custom):
  path, expected = custom
  proc = _serve_cli(['--model_name=m', f'--model_base_path={os.path.dirname(path)}',
                     '--rest_api_port=0', '--warmup=1'])
  killer = threading.Timer(120, proc.kill)
  killer.start()
  try:
    port, _ = wait_until_serving(proc)
    body = ('{"instances": %s}' % str(_instances([2])).replace("'", '"')).encode()
    # A request in flight: headers and half of the body sent, then SIGTERM.
    s = socket.create_connection(('127.0.0.1', port), timeout=60)
    s.sendall(b'POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n'
              % len(body) + body[:10])
    time.sleep(0.3)  # let the server start reading the body before the signal
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    s.sendall(body[10:])
    reply = b''
    while b'\r\n\r\n' not in reply or not reply.rstrip().endswith(b'}'):
      chunk = s.recv(65536)
      if not chunk:
        break
      reply += chunk
    s.close()
    assert reply.startswith(b'HTTP/1.1 200'), reply
    assert b'Connection: close' in reply
    assert proc.wait(timeout=60) == 0
    with pytest.raises(OSError):  # no longer accepting
      socket.create_connection(('127.0.0.1', port), timeout=5).close()
  finally:
    killer.cancel()
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_cli_rejects_a_bad_port_clearly():
  proc = _serve_cli(['--model_base_path=/nonexistent', '--port', '99999'])
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 2
  assert 'must be in [0, 65535]' in out and 'Traceback' not in out
