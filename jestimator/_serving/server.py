"""`ModelServer`: TF Serving's REST API over one export, on the standard library's HTTP server.

Routes (NAME is the model name, `/versions/V` optional):
  GET  /v1/models/NAME               model version status
  GET  /v1/models/NAME/metadata      signatures (TF's signature_def map)
  POST /v1/models/NAME:predict       {"instances": [...]} or {"inputs": {...}}, "signature_name"
  POST /v1/models/NAME:classify      {"examples": [...], "context": {...}}
  POST /v1/models/NAME:regress       idem
Bad requests get HTTP 400 with `{"error": "..."}`; the server keeps serving.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

from jestimator._serving import rest
from jestimator._serving.batcher import Batcher
from jestimator.export import served_model
from jestimator.export import signatures as sigs

logger = logging.getLogger('jestimator.serve')

_ROUTE = re.compile(r'^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?'
                    r'(?P<what>/metadata|:predict|:classify|:regress)?/?$')
_MAX_BODY = 64 << 20


class ModelServer:
  """Serves one export over HTTP.

  Args:
    export_dir: an export folder, or a folder of exports (an exporter's): the newest is served.
    model_name: the NAME in the URLs.
    host, port: where to listen (port 0: a free port, see `.port`).
    max_batch_size: most rows scored in one merged batch.
    batch_timeout_ms: how long a batch waits for more requests (0: only those already queued).
    warmup: batch sizes to compile for every signature before serving (each compiles its
      power-of-two bucket, ~0.3 s per size and signature on CPU); other sizes compile when first
      seen.

  Example:
    server = ModelServer('/tmp/export', 'census', port=0).start()
    ... POST http://127.0.0.1:{server.port}/v1/models/census:predict ...
    server.stop()
  """

  def __init__(self, export_dir: str, model_name: str = 'default', host: str = '127.0.0.1',
               port: int = 8501, max_batch_size: int = 128, batch_timeout_ms: float = 0.0,
               warmup: Sequence[int] = (1,)):
    if not re.fullmatch(r'[^/:\s]+', model_name or ''):
      raise ValueError(f'model_name must be non-empty without "/", ":" or spaces, got '
                       f'{model_name!r}')
    self.model = served_model.load(served_model.latest_export(export_dir))
    self.model_name = model_name
    if warmup:
      self.model.warmup(tuple(warmup))
    self.batcher = Batcher(self.model.run, max_batch_size, batch_timeout_ms / 1000.0)
    handler = type('Handler', (_Handler,), {'server_ref': self})
    self.httpd = ThreadingHTTPServer((host, port), handler)
    self.httpd.daemon_threads = True
    self.host, self.port = self.httpd.server_address[:2]
    self._thread: threading.Thread | None = None

  @property
  def url(self) -> str:
    return f'http://{self.host}:{self.port}'

  def serve_forever(self) -> None:
    """Serves until `stop()` (or Ctrl-C in the CLI)."""
    self.httpd.serve_forever(poll_interval=0.2)

  def start(self) -> ModelServer:
    """Serves in a background thread; returns self."""
    self._thread = threading.Thread(target=self.serve_forever, name='jestimator-serve',
                                    daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    self.httpd.shutdown()
    self.httpd.server_close()
    self.batcher.close()

  # -- request handling (called by handler threads) -----------------------------------------------
  def handle(self, method: str, path: str, body: bytes | None) -> tuple[int, dict[str, Any]]:
    m = _ROUTE.match(path.split('?', 1)[0])
    if not m:
      return 404, {'error': f'Malformed request: {method} {path}'}
    name, version, what = m.group('name'), m.group('version'), m.group('what')
    if name != self.model_name or (version is not None and
                                   version != rest.version_of(self.model)):
      spec = f'{name} version {version}' if version else f'Latest({name})'
      return 404, {'error': f'Servable not found for request: {spec}'}
    if method == 'GET':
      if what is None:
        return 200, rest.status(self.model)
      if what == '/metadata':
        return 200, rest.metadata(self.model, self.model_name)
      return 405, {'error': f'{what[1:]} needs POST'}
    if what is None or what == '/metadata':
      return 405, {'error': 'this URL needs GET'}
    try:
      request = json.loads(body or b'')
    except (ValueError, UnicodeDecodeError) as e:
      return 400, {'error': f'JSON Parse error: {e}'}
    try:
      return 200, self._score(what[1:], request)
    except (ValueError, TypeError) as e:  # bad input: the client's error
      return 400, {'error': str(e)}
    except Exception as e:  # noqa: BLE001 - keep serving; report it
      logger.exception('internal error on %s', path)
      return 500, {'error': f'{type(e).__name__}: {e}'}

  def _score(self, verb: str, request: Any) -> dict[str, Any]:
    model = self.model
    name = request.get('signature_name') if isinstance(request, dict) else None
    if name is not None and not isinstance(name, str):
      raise rest.RequestError(f'"signature_name" must be a string, got {name!r}')
    if verb == 'predict':
      sig = model.signature(name or sigs.DEFAULT)
      columns, rows = rest.predict_columns(request, sig.inputs)
    else:
      sig = model.signature(rest.signature_for(model, verb, name))
      # examples are feature dicts (raw features), also for a parsing export (as TF Serving)
      columns = rest.examples_columns(request, model.inputs)
    features, n = model.check(columns, sig.name)
    out = self.batcher.submit(sig.name, features, n)
    if verb == 'predict':
      return rest.predict_response(out, rows)
    return rest.classify_response(out) if verb == 'classify' else rest.regress_response(out)


class _Handler(BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'  # keep-alive: clients reuse connections
  # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm holds the
  # body until the client's delayed ACK (~40 ms per request).
  disable_nagle_algorithm = True
  server_ref: ModelServer

  def do_GET(self):  # noqa: N802 - http.server's naming
    self._reply(*self.server_ref.handle('GET', self.path, None))

  def do_POST(self):  # noqa: N802
    try:
      length = int(self.headers.get('Content-Length', '0'))
    except ValueError:
      length = -1
    if length < 0 or length > _MAX_BODY:
      self._reply(400 if length < 0 else 413, {'error': f'bad Content-Length ({length})'})
      return
    body = self.rfile.read(length) if length else b''
    self._reply(*self.server_ref.handle('POST', self.path, body))

  def _reply(self, code: int, doc: dict) -> None:
    data = json.dumps(doc, separators=(',', ':')).encode('utf-8')
    self.send_response(code, HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_
                       else None)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, format, *args):  # noqa: A002 - http.server's signature
    logger.debug('%s - %s', self.address_string(), format % args)
