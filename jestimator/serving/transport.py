"""HTTP/1.1 transport of the model server (standard library), hardened for untrusted clients.

- Framing: `Content-Length` must be one plain decimal number within `max_body_bytes`; chunked
  bodies (`Transfer-Encoding: chunked`) are decoded; both headers at once, another transfer
  coding, a body without either (411), or any malformed framing answers an error and closes the
  connection, so unread bytes can never be read as a next request (no request smuggling).
- Timeouts and bounds: every read waits at most `read_timeout_s`; at most `max_connections`
  connections are served at once (more get 503 and are closed at once); the listen backlog holds
  `backlog` pending connects (the stdlib default of 5 resets bursts of clients).
- Clients that disconnect (broken pipe, reset) end their connection quietly: no tracebacks.
- `drain()` stops accepting, answers in-flight requests (with `Connection: close`), and waits.

The application is a function `app(method, path, body) -> (status, content_type, bytes)`.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

logger = logging.getLogger('jestimator.serve')

App = Callable[[str, str, 'bytes | None'], 'tuple[int, str, bytes]']


class FramingError(Exception):
  """A request whose body cannot be delimited: answer `status` and close the connection."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


class HTTPServer(ThreadingHTTPServer):
  """A threading HTTP server with a connection bound, a deep backlog and quiet disconnects."""

  daemon_threads = True
  block_on_close = False
  allow_reuse_address = True

  def __init__(self, address: tuple[str, int], app: App, *, backlog: int = 128,
               max_connections: int = 128, read_timeout_s: float = 30.0,
               max_body_bytes: int = 64 << 20):
    for name, value in (('backlog', backlog), ('max_connections', max_connections)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    if not read_timeout_s > 0:
      raise ValueError(f'read_timeout_s must be > 0, got {read_timeout_s!r}')
    self.request_queue_size = backlog  # read by server_activate's listen()
    self.app = app
    self.max_body_bytes = int(max_body_bytes)
    self._slots = threading.BoundedSemaphore(max_connections)
    self._busy = 0  # requests being answered (not idle keep-alive connections)
    self._busy_lock = threading.Condition()
    self.draining = False
    handler = type('Handler', (_Handler,), {'timeout': read_timeout_s})
    super().__init__(address, handler)

  # -- connection bound ---------------------------------------------------------------------------
  def process_request(self, request, client_address):
    if not self._slots.acquire(blocking=False):
      _refuse(request)
      self.shutdown_request(request)
      return
    try:
      super().process_request(request, client_address)
    except BaseException:
      self._slots.release()
      raise

  def process_request_thread(self, request, client_address):
    try:
      super().process_request_thread(request, client_address)
    finally:
      self._slots.release()

  def handle_error(self, request, client_address):
    import sys
    err = sys.exc_info()[1]
    if isinstance(err, (ConnectionError, TimeoutError, socket.timeout)):
      logger.debug('connection from %s ended: %r', client_address, err)
    else:
      logger.exception('unexpected error serving %s', client_address)

  # -- in-flight accounting -----------------------------------------------------------------------
  def begin_request(self) -> None:
    with self._busy_lock:
      self._busy += 1

  def end_request(self) -> None:
    with self._busy_lock:
      self._busy -= 1
      self._busy_lock.notify_all()

  def drain(self, timeout_s: float = 30.0) -> bool:
    """Stops accepting, then waits until no request is being answered; False on timeout."""
    self.draining = True
    self.shutdown()
    self.socket.close()
    deadline = time.monotonic() + timeout_s
    with self._busy_lock:
      while self._busy:
        left = deadline - time.monotonic()
        if left <= 0:
          return False
        self._busy_lock.wait(left)
    return True


def _refuse(sock) -> None:
  body = b'{"error":"the server has too many open connections; retry later"}'
  try:
    sock.settimeout(1.0)
    sock.sendall(b'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n'
                 b'Connection: close\r\nContent-Length: %d\r\n\r\n%s' % (len(body), body))
  except OSError:
    pass


class _Handler(BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'  # keep-alive: clients reuse connections
  # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm holds the
  # body until the client's delayed ACK (~40 ms per request).
  disable_nagle_algorithm = True
  server: HTTPServer

  def do_GET(self):  # noqa: N802 - http.server's naming
    self._serve('GET')

  def do_POST(self):  # noqa: N802
    self._serve('POST')

  def _serve(self, method: str) -> None:
    self.server.begin_request()
    try:
      try:
        body = self._read_body(method)
      except FramingError as e:
        self._reply(e.status, 'application/json', json.dumps({'error': str(e)}).encode(),
                    close=True)
        return
      except (TimeoutError, socket.timeout, ConnectionError):
        self.close_connection = True  # a client that stalls or leaves mid-body: nothing to answer
        return
      status, ctype, data = self.server.app(method, self.path, body)
      self._reply(status, ctype, data, close=self.server.draining)
    finally:
      self.server.end_request()

  def _read_body(self, method: str) -> bytes | None:
    lengths = self.headers.get_all('Content-Length') or []
    coding = self.headers.get_all('Transfer-Encoding') or []
    if lengths and coding:
      raise FramingError(400, 'a request may not have both Content-Length and Transfer-Encoding')
    if coding:
      if [c.strip().lower() for c in ','.join(coding).split(',')] != ['chunked']:
        raise FramingError(501, f'unsupported Transfer-Encoding {", ".join(coding)!r}; only '
                                'chunked is supported')
      return self._read_chunked()
    if not lengths:
      if method == 'POST':
        raise FramingError(411, 'a POST request needs Content-Length (or chunked encoding)')
      return None
    if len(set(v.strip() for v in lengths)) != 1 or not lengths[0].strip().isdigit():
      raise FramingError(400, f'bad Content-Length {", ".join(lengths)!r}')
    length = int(lengths[0])
    body = self._read_exactly(length, length)
    return body if method == 'POST' else None

  def _read_exactly(self, n: int, total: int) -> bytes:
    """The next `n` body bytes, `total` being the body's size with them; 413 past the limit."""
    if total > self.server.max_body_bytes:
      raise FramingError(413, f'the body ({total} bytes or more) exceeds the limit of '
                              f'{self.server.max_body_bytes} bytes')
    data = self.rfile.read(n)
    if len(data) != n:
      raise ConnectionError('the client closed the connection mid-body')
    return data

  def _read_chunked(self) -> bytes:
    parts, total = [], 0
    while True:
      line = self.rfile.readline(1024)
      if not line.endswith(b'\n'):
        if not line:
          raise ConnectionError('the client closed the connection mid-body')
        raise FramingError(400, 'bad chunk size line')
      size_text = line.split(b';', 1)[0].strip()
      if not size_text or any(c not in b'0123456789abcdefABCDEF' for c in size_text):
        raise FramingError(400, f'bad chunk size {size_text[:20]!r}')
      size = int(size_text, 16)
      if size == 0:
        break
      total += size
      data = self._read_exactly(size, total)
      if self.rfile.readline(3) not in (b'\r\n', b'\n'):
        raise FramingError(400, 'a chunk is not followed by CRLF')
      parts.append(data)
    for _ in range(64):  # trailer fields, up to the empty line
      line = self.rfile.readline(8192)
      if line in (b'\r\n', b'\n'):
        return b''.join(parts)
      if not line:
        raise ConnectionError('the client closed the connection in the trailer')
    raise FramingError(400, 'too many trailer fields')

  def _reply(self, code: int, content_type: str, data: bytes, close: bool = False) -> None:
    try:
      phrase = HTTPStatus(code).phrase
    except ValueError:
      phrase = ''
    try:
      self.send_response(code, phrase)
      self.send_header('Content-Type', content_type)
      self.send_header('Content-Length', str(len(data)))
      if close:
        self.send_header('Connection', 'close')
        self.close_connection = True
      self.end_headers()
      self.wfile.write(data)
    except (ConnectionError, TimeoutError, socket.timeout):
      self.close_connection = True  # the client left: nobody to tell

  def log_message(self, format, *args):  # noqa: A002 - http.server's signature
    logger.debug('%s - %s', self.address_string(), format % args)
