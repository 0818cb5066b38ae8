"""HTTP/1.1 transport of the model server (standard library), hardened for untrusted clients.

- Framing: `Content-Length` must be one plain decimal number within `max_body_bytes`; chunked
  bodies (`Transfer-Encoding: chunked`) are decoded; both headers at once, another transfer
  coding, a body without either (411), or any malformed framing answers an error and closes the
  connection, so unread bytes can never be read as a next request (no request smuggling).
- Timeouts and bounds: every read waits at most `read_timeout_s`; at most `max_connections`
  connections are served at once (more get 503 and are closed at once); the listen backlog holds
  `backlog` pending connects (the stdlib default of 5 resets bursts of clients).
- Slow clients (as Apache's mod_reqtimeout): a request's line and headers must arrive within
  `header_timeout_s` of its first byte, and its body within `body_timeout_s` of the headers plus
  one second per `min_body_rate` bytes received (a client sustaining that rate is never cut). A
  client past either bound gets 408 and is closed, freeing its connection slot: a client
  trickling one byte at a time holds a slot for seconds, not forever.
- Clients that disconnect (broken pipe, reset) end their connection quietly: no tracebacks.
- `drain()` stops accepting, answers in-flight requests (with `Connection: close`), and waits.

The application is a function `app(method, path, body) -> (status, content_type, bytes)`.
"""
from __future__ import annotations

import io
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
               max_body_bytes: int = 64 << 20, header_timeout_s: float = 20.0,
               body_timeout_s: float = 20.0, min_body_rate: float = 500.0):
    for name, value in (('backlog', backlog), ('max_connections', max_connections)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    for name, value in (('read_timeout_s', read_timeout_s),
                        ('header_timeout_s', header_timeout_s),
                        ('body_timeout_s', body_timeout_s)):
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f'{name} must be > 0, got {value!r}')
    if isinstance(min_body_rate, bool) or not isinstance(min_body_rate, (int, float)) or \
        not min_body_rate >= 0:
      raise ValueError(f'min_body_rate must be >= 0 (bytes per second; 0: none), got '
                       f'{min_body_rate!r}')
    self.request_queue_size = backlog  # read by server_activate's listen()
    self.app = app
    self.max_body_bytes = int(max_body_bytes)
    self.bounds = _Bounds(float(read_timeout_s), float(header_timeout_s), float(body_timeout_s),
                          float(min_body_rate))
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


class _Bounds:
  """The time bounds of a connection's reads (see the module docstring)."""

  def __init__(self, idle_s: float, header_s: float, body_s: float, min_body_rate: float):
    self.idle_s, self.header_s, self.body_s = idle_s, header_s, body_s
    self.min_body_rate = min_body_rate


class _TimedReader(io.RawIOBase):
  """The connection's socket as a raw stream whose reads enforce the request deadlines.

  `http.server` reads through a buffered file, which calls `recv` as often as bytes come: a
  per-`recv` timeout never fires for a client sending a byte a second. Here each `recv` waits at
  most until the current phase's deadline: 'idle' (before a request's first byte: only the
  silence bound `idle_s`), 'header' (from that byte) and 'body' (from `start_body()`).
  """

  def __init__(self, sock: socket.socket, bounds: _Bounds):
    super().__init__()
    self._sock, self._bounds = sock, bounds
    self.phase = 'idle'
    self.expired: str | None = None  # the phase whose deadline passed
    self._start = 0.0
    self._body_bytes = 0

  def readable(self) -> bool:
    return True

  def await_request(self) -> None:
    """Between requests: only the silence bound applies until the next request's first byte."""
    self.phase, self.expired = 'idle', None
    self._sock.settimeout(self._bounds.idle_s)  # also bounds the writes of the reply

  def start_body(self) -> None:
    self.phase, self._start, self._body_bytes = 'body', time.monotonic(), 0

  def _deadline(self) -> float:
    b = self._bounds
    if self.phase == 'header':
      return self._start + b.header_s
    extra = self._body_bytes / b.min_body_rate if b.min_body_rate else 0.0
    return self._start + b.body_s + extra

  def readinto(self, buffer) -> int:
    wait = self._bounds.idle_s
    if self.phase != 'idle':
      left = self._deadline() - time.monotonic()
      if left <= 0:
        self.expired = self.phase
        raise TimeoutError(f'the request {self.phase} took longer than its time bound')
      wait = min(wait, left)
    self._sock.settimeout(wait)
    try:
      n = self._sock.recv_into(buffer)
    except TimeoutError:
      if self.phase != 'idle' and time.monotonic() >= self._deadline():
        self.expired = self.phase
      raise
    if self.phase == 'idle' and n:
      self.phase, self._start = 'header', time.monotonic()
    elif self.phase == 'body':
      self._body_bytes += n
    return n


class _Handler(BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'  # keep-alive: clients reuse connections
  # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm holds the
  # body until the client's delayed ACK (~40 ms per request).
  disable_nagle_algorithm = True
  server: HTTPServer

  def setup(self) -> None:
    super().setup()
    self._reader = _TimedReader(self.connection, self.server.bounds)
    self.rfile = io.BufferedReader(self._reader)

  def handle_one_request(self) -> None:
    self._reader.await_request()
    super().handle_one_request()  # a timeout there closes the connection
    if self._reader.expired == 'header':
      self._timed_out(f'the request line and headers did not arrive within '
                      f'{self.server.bounds.header_s:g} s')

  def _timed_out(self, why: str) -> None:
    """408 and close: the slot goes to another client."""
    self.connection.settimeout(1.0)  # a short reply; a client that reads no faster loses it
    # The request line may not have arrived: reply as HTTP/1.1 (not HTTP/0.9, which has no status
    # line), and give http.server's logging a request line.
    self.request_version = 'HTTP/1.1'
    self.requestline = getattr(self, 'requestline', '')
    self._reply(408, 'application/json', json.dumps({'error': why}).encode(), close=True)

  def do_GET(self):  # noqa: N802 - http.server's naming
    self._serve('GET')

  def do_POST(self):  # noqa: N802
    self._serve('POST')

  def _serve(self, method: str) -> None:
    self.server.begin_request()
    try:
      try:
        self._reader.start_body()
        body = self._read_body(method)
      except FramingError as e:
        self._reply(e.status, 'application/json', json.dumps({'error': str(e)}).encode(),
                    close=True)
        return
      except (TimeoutError, socket.timeout, ConnectionError):
        self.close_connection = True  # a client that stalls or leaves mid-body: nothing to answer
        if self._reader.expired == 'body':
          b = self.server.bounds
          rate = f' plus one second per {b.min_body_rate:g} bytes' if b.min_body_rate else ''
          self._timed_out(f'the request body did not arrive within {b.body_s:g} s{rate}')
        return
      self._reader.await_request()  # the reply's writes get the plain socket timeout
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
