"""A bounded load test on 127.0.0.1: 32 clients x 50 requests on new connections, 16 x 200 on
kept-alive ones, and a slowloris client trickling one request the whole time: 0 failures, and
the slowloris delays nobody (everyone else finishes while it still holds its connection)."""
import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest

from _export_models import make_raw
from jestimator import export
from jestimator.serve import ModelServer

pytestmark = pytest.mark.slow
_X = make_raw(16, seed=11)['x']


def test_load_without_and_with_keep_alive_and_a_slowloris(models):
  _, path = models.get('custom')
  expected = export.load(path).predict({'x': _X})['probability']
  server = ModelServer(path, 'm', port=0, read_timeout_s=30.0).start()
  failures, lock = [], threading.Lock()
  slow_done = threading.Event()

  def check(i, status, data):
    ok = status == 200 and np.isclose(json.loads(data)['predictions'][0]['probability'],
                                      expected[i], atol=1e-6)
    if not ok:
      with lock:
        failures.append((status, data[:200]))

  def body(i):
    return json.dumps({'instances': [{'x': _X[i].tolist()}]})

  def fresh_connections(seed):
    for j in range(50):
      i = (seed + j) % len(_X)
      try:
        c = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
        c.request('POST', '/v1/models/m:predict', body(i), {'Connection': 'close'})
        r = c.getresponse()
        check(i, r.status, r.read())
        c.close()
      except OSError as e:  # a reset or refused connect is a failure too
        with lock:
          failures.append(repr(e))

  def keep_alive(seed):
    c = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
    try:
      for j in range(200):
        i = (seed + j) % len(_X)
        c.request('POST', '/v1/models/m:predict', body(i))
        r = c.getresponse()
        check(i, r.status, r.read())
    except OSError as e:
      with lock:
        failures.append(repr(e))
    finally:
      c.close()

  def slowloris():
    # A valid request padded with 1 MB of JSON whitespace, sent one byte per 50 ms (well within
    # the read timeout): it never completes while the test runs.
    payload = body(0).encode() + b' ' * (1 << 20)
    data = (b'POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s'
            % (len(payload), payload))
    with socket.create_connection(('127.0.0.1', server.port), timeout=60) as s:
      try:
        for k in range(len(data)):
          if others_done.is_set():
            return
          s.sendall(data[k:k + 1])
          time.sleep(0.05)
      except OSError:
        pass  # the server closed it: the assertion below reports that
      slow_done.set()

  others_done = threading.Event()
  loris = threading.Thread(target=slowloris)
  loris.start()
  threads = ([threading.Thread(target=fresh_connections, args=(s,)) for s in range(32)] +
             [threading.Thread(target=keep_alive, args=(s,)) for s in range(16)])
  try:
    start = time.perf_counter()
    for t in threads:
      t.start()
    for t in threads:
      t.join(300)
    finished_before_slowloris = not slow_done.is_set()
    print(f'4800 requests in {time.perf_counter() - start:.1f} s')
    others_done.set()
    loris.join(60)
  finally:
    server.stop()
  assert not failures, failures[:5]
  assert not any(t.is_alive() for t in threads)
  assert finished_before_slowloris  # 4800 requests done while one client still trickled bytes
