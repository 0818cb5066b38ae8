"""A bounded load test on 127.0.0.1: 32 clients x 50 requests on new connections and 16 x 200 on
kept-alive ones, while 8 slow clients send one byte per second (reconnecting whenever they are
cut): 0 failures for the normal clients, and every slow connection is cut (408) at the request
time bound, so slow clients hold slots for seconds, not forever. Small bounds are injected to keep
the test fast."""
import http.client
import json
import select
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
_BOUND_S = 2.0  # header_timeout_s and body_timeout_s of the server under test


def test_load_without_and_with_keep_alive_and_slow_clients(models):
  _, path = models.get('custom')
  expected = export.load(path).predict({'x': _X})['probability']
  server = ModelServer(path, 'm', port=0, read_timeout_s=30.0, header_timeout_s=_BOUND_S,
                       body_timeout_s=_BOUND_S, min_body_rate=0).start()
  failures, lock = [], threading.Lock()
  cuts = []  # (seconds a slow connection was held, the server's reply)

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

  def slow_client(k):
    # A valid request, headers (k even) or a body padded with JSON whitespace (k odd) sent one
    # byte per second; cut, it connects again, as long as the normal clients run.
    payload = body(0).encode() + b' ' * 100
    head = b'POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n' % len(payload)
    data = head + b'X-Pad: ' + b'a' * 100 if k % 2 == 0 else head + b'\r\n' + payload
    while not others_done.is_set():
      sent = len(head) + 2 if k % 2 else 0  # the body case sends its headers at once
      with socket.create_connection(('127.0.0.1', server.port), timeout=60) as s:
        start = time.monotonic()
        s.sendall(data[:sent])
        while sent < len(data) and not others_done.is_set():
          try:
            s.sendall(data[sent:sent + 1])
          except OSError:
            break
          sent += 1
          if select.select([s], [], [], 1.0)[0]:  # the server answered or closed
            break
        else:
          return  # the normal clients are done (or, wrongly, everything was sent)
        reply = b''
        try:
          while chunk := s.recv(4096):
            reply += chunk
        except OSError:
          pass
        with lock:
          cuts.append((time.monotonic() - start, reply))

  others_done = threading.Event()
  slow = [threading.Thread(target=slow_client, args=(k,)) for k in range(8)]
  threads = ([threading.Thread(target=fresh_connections, args=(s,)) for s in range(32)] +
             [threading.Thread(target=keep_alive, args=(s,)) for s in range(16)])
  try:
    for t in slow:
      t.start()
    start = time.perf_counter()
    for t in threads:
      t.start()
    for t in threads:
      t.join(300)
    elapsed = time.perf_counter() - start
    print(f'4800 requests in {elapsed:.1f} s; {len(cuts)} slow connections cut')
    others_done.set()
    for t in slow:
      t.join(60)
  finally:
    server.stop()
  assert not failures, failures[:5]
  assert not any(t.is_alive() for t in threads + slow)
  # Every slow connection was cut at the bound with a 408 (was: held for as long as it dripped).
  assert len(cuts) >= 8 * max(1, int(elapsed // (_BOUND_S + 1)) - 1), (elapsed, len(cuts))
  for held, reply in cuts:
    assert _BOUND_S - 0.1 < held < _BOUND_S + 2.5, (held, reply[:100])
    assert reply.startswith(b'HTTP/1.1 408 Request Timeout'), reply[:100]
