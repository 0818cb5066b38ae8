"""`ModelServer`: TF Serving's REST API over versioned exports, on the standard library.

Routes (NAME is a model name; `/versions/V` picks a loaded version, else the newest is used):
  GET  /v1/models/NAME[/versions/V]             model version status
  GET  /v1/models/NAME[/versions/V]/metadata    signatures (TF's signature_def map)
  POST /v1/models/NAME[/versions/V]:predict     {"instances": [...]} or {"inputs": {...}}
  POST /v1/models/NAME[/versions/V]:classify    {"examples": [...], "context": {...}}
  POST /v1/models/NAME[/versions/V]:regress     idem
  GET  /monitoring/prometheus/metrics           Prometheus text format (see `metrics`)
Bad requests get HTTP 400 with `{"error": "..."}`; the server keeps serving.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Sequence

from jestimator._serving import metrics as metrics_lib
from jestimator._serving import rest, transport
from jestimator._serving.batcher import Batcher
from jestimator._serving.versions import ModelVersions, VersionPolicy
from jestimator.export import served_model
from jestimator.export import signatures as sigs

logger = logging.getLogger('jestimator.serve')

_ROUTE = re.compile(r'^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?'
                    r'(?P<what>/metadata|:predict|:classify|:regress)?/?$')
METRICS_PATH = '/monitoring/prometheus/metrics'
_JSON = 'application/json'
_API = {None: 'GetModelStatus', '/metadata': 'GetModelMetadata', ':predict': 'predict',
        ':classify': 'classify', ':regress': 'regress'}


class ModelServer:
  """Serves exports over HTTP, reloading new versions as they appear.

  Args:
    export_dir: a folder of numbered exports (TF Serving's `--model_base_path`, e.g. an
      exporter's `model_dir/export/<name>`), or one export (served as a single fixed version).
    model_name: the NAME in the URLs.
    host, port: where to listen (port 0: a free port, see `.port`).
    max_batch_size: most rows scored in one merged batch.
    batch_timeout_ms: how long a batch waits for more requests (0: only those already queued).
    warmup: batch sizes to compile for every signature of each version before it serves.
    version_policy: a `VersionPolicy` (default: the newest version).
    models: `[(name, base_path, VersionPolicy)]` to serve several models (`--model_config_file`);
      replaces `export_dir`, `model_name` and `version_policy`.
    poll_interval_s: how often the base paths are scanned for new or removed versions (0: never).
    load_retry_interval_s, max_num_load_retries: a version that failed to load is retried this
      often, this many times (TF Serving's flags), and at once when any of its files changes.
    nan_policy: 'nan' (write NaN / Infinity as TF Serving does), 'null', or 'error'.
    max_connections, read_timeout_s, backlog, max_body_bytes, header_timeout_s,
      body_timeout_s, min_body_rate: see `transport.HTTPServer`.

  Example:
    server = ModelServer('/tmp/export', 'census', port=0).start()
    ... POST http://127.0.0.1:{server.port}/v1/models/census:predict ...
    server.stop()
  """

  def __init__(self, export_dir: str | None = None, model_name: str = 'default',
               host: str = '127.0.0.1', port: int = 8501, max_batch_size: int = 128,
               batch_timeout_ms: float = 0.0, warmup: Sequence[int] = (1,), *,
               version_policy: VersionPolicy | None = None,
               models: Sequence[tuple[str, str, VersionPolicy]] | None = None,
               poll_interval_s: float = 1.0, nan_policy: str = 'nan', max_connections: int = 128,
               read_timeout_s: float = 30.0, backlog: int = 128, max_body_bytes: int = 64 << 20,
               header_timeout_s: float = 20.0, body_timeout_s: float = 20.0,
               min_body_rate: float = 500.0, load_retry_interval_s: float = 60.0,
               max_num_load_retries: int = 5):
    if (models is None) == (export_dir is None):
      raise ValueError('give exactly one of export_dir (one model) or models (several)')
    if models is None:
      models = [(model_name, export_dir, version_policy or VersionPolicy())]
    if nan_policy not in rest.NAN_POLICIES:
      raise ValueError(f'nan_policy must be one of {rest.NAN_POLICIES}, got {nan_policy!r}')
    if not 0 <= port <= 65535 or isinstance(port, bool):
      raise ValueError(f'port must be in [0, 65535], got {port!r}')
    for name, _, _ in models:
      if not re.fullmatch(r'[^/:\s]+', name or ''):
        raise ValueError(f'model_name must be non-empty without "/", ":" or spaces, got {name!r}')
    self.nan_policy = nan_policy
    self._warmup = tuple(warmup or ())
    self.metrics = metrics_lib.Registry()
    self.batcher = Batcher(max_batch_size, batch_timeout_ms / 1000.0, self._on_batch)
    # The port first: a port in use is an error naming it before minutes of loading models.
    try:
      self.httpd = transport.HTTPServer(
          (host, port), self.handle, backlog=backlog, max_connections=max_connections,
          read_timeout_s=read_timeout_s, max_body_bytes=max_body_bytes,
          header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s,
          min_body_rate=min_body_rate)
    except OSError as e:
      raise OSError(e.errno, f'cannot listen on {host}:{port}: {e.strerror or e}; another '
                             'process may use the port (pick another, or 0 for a free one)'
                    ) from None
    self.host, self.port = self.httpd.server_address[:2]
    try:
      self.models = {name: ModelVersions(name, path, policy, self._load,
                                         retry_interval_s=load_retry_interval_s,
                                         max_retries=max_num_load_retries)
                     for name, path, policy in models}
    except BaseException:
      self.httpd.server_close()
      raise
    self.model_name = next(iter(self.models))
    self.poll_interval_s = float(poll_interval_s)
    self._stopping = threading.Event()
    self._poller: threading.Thread | None = None

  @property
  def url(self) -> str:
    return f'http://{self.host}:{self.port}'

  @property
  def model(self) -> served_model.ServedModel:
    """The newest loaded version of the first model."""
    return self.models[self.model_name].get()

  def _load(self, path: str) -> served_model.ServedModel:
    model = served_model.load(path)
    if self._warmup:
      model.warmup(self._warmup)
    return model

  # -- lifecycle ----------------------------------------------------------------------------------
  def serve_forever(self) -> None:
    """Serves (and polls for versions) until `stop()` or `drain()`."""
    if self.poll_interval_s > 0 and self._poller is None:
      self._poller = threading.Thread(target=self._poll_loop, name='jestimator-poll', daemon=True)
      self._poller.start()
    self.httpd.serve_forever(poll_interval=0.2)

  def start(self) -> ModelServer:
    """Serves in a background thread; returns self."""
    threading.Thread(target=self.serve_forever, name='jestimator-serve', daemon=True).start()
    return self

  def poll(self) -> None:
    """Scans every model's base path once (loads new versions, unloads removed ones)."""
    for versions in self.models.values():
      versions.poll()

  def _poll_loop(self) -> None:
    while not self._stopping.wait(self.poll_interval_s):
      try:
        self.poll()
      except Exception:  # noqa: BLE001 - a scan failure must not stop serving
        logger.exception('scanning the model base paths failed')

  def drain(self, timeout_s: float = 30.0) -> bool:
    """Graceful stop: no new connections, in-flight requests answered; False on timeout."""
    self._stop_polling()
    done = self.httpd.drain(timeout_s)
    self.batcher.close()
    return done

  def _stop_polling(self) -> None:
    # Wait for a version being loaded: a process that exits while a thread compiles aborts.
    self._stopping.set()
    if self._poller is not None:
      self._poller.join(timeout=300)

  def stop(self) -> None:
    """Stops at once (in-flight requests may be cut; see `drain` for the graceful way)."""
    self._stop_polling()
    if not self.httpd.draining:
      self.httpd.shutdown()
    self.httpd.server_close()
    self.batcher.close()

  # -- requests (called by the transport's handler threads) ---------------------------------------
  def handle(self, method: str, path: str, body: bytes | None) -> tuple[int, str, bytes]:
    """`(status, content type, body)` of one request; never raises."""
    path = path.split('?', 1)[0]
    if path == METRICS_PATH:
      if method != 'GET':
        return 405, _JSON, b'{"error":"the metrics need GET"}'
      return 200, 'text/plain; version=0.0.4; charset=utf-8', self.metrics.render().encode()
    start = time.perf_counter()
    m = _ROUTE.match(path)
    labels = {'model_name': m.group('name') if m else '', 'version': '',
              'API': _API.get(m.group('what')) if m else 'unknown', 'entrypoint': 'REST'}
    try:
      code, doc = self._route(method, path, m, body, labels)
    except RecursionError:
      code, doc = 400, {'error': 'the request is nested too deeply'}
    except Exception as e:  # noqa: BLE001 - keep serving; report it
      logger.exception('internal error on %s', path)
      code, doc = 500, {'error': f'{type(e).__name__}: {e}'}
    try:
      data = json.dumps(doc, separators=(',', ':')).encode('utf-8')
    except RecursionError:  # an echo of a deeply nested value in an error message
      code, data = 400, b'{"error":"the request is nested too deeply"}'
    self.metrics.count(metrics_lib.REQUEST_COUNT,
                       dict(labels, status=metrics_lib.status_name(code)))
    self.metrics.observe(metrics_lib.REQUEST_LATENCY, labels,
                         (time.perf_counter() - start) * 1e6, metrics_lib.LATENCY_BUCKETS_US)
    return code, _JSON, data

  def _route(self, method, path, m, body, labels) -> tuple[int, dict[str, Any]]:
    if not m:
      return 404, {'error': f'Malformed request: {method} {path}'}
    name, version, what = m.group('name'), m.group('version'), m.group('what')
    versions = self.models.get(name)
    number = int(version) if version is not None and version.isdigit() else None
    found = versions.resolve(number) if versions is not None and (
        version is None or number is not None) else None
    if found is None:
      failed = versions.failures() if versions is not None else {}
      if method == 'GET' and what is None and number in failed:  # its failed load, as TF Serving
        return 200, rest.status([], {number: failed[number]})
      spec = f'{name} version {version}' if version else f'Latest({name})'
      return 404, {'error': f'Servable not found for request: {spec}'}
    served, model = found
    labels['version'] = str(served)
    if method == 'GET':
      if what is None:
        if version is not None:
          return 200, rest.status([served])
        return 200, rest.status(list(versions.snapshot()), versions.failures())
      if what == '/metadata':
        return 200, rest.metadata(model, name, served)
      return 405, {'error': f'{what[1:]} needs POST'}
    if what is None or what == '/metadata':
      return 405, {'error': 'this URL needs GET'}
    try:
      request = json.loads(body or b'')
    except (ValueError, UnicodeDecodeError) as e:
      return 400, {'error': f'JSON Parse error: {e}'}
    try:
      return 200, self._score(model, (name, served), what[1:], request)
    except (ValueError, TypeError) as e:  # bad input: the client's error
      return 400, {'error': str(e)}

  def _score(self, model, key, verb: str, request: Any) -> dict[str, Any]:
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
    rest.check_types(columns, sig.inputs if verb == 'predict' else model.inputs,
                     examples=verb != 'predict')
    features, n = model.check(columns, sig.name)
    out = self.batcher.submit(lambda f, k: model.run(f, k, sig.name), key + (sig.name,),
                              features, n)
    out = rest.finite_outputs(out, self.nan_policy)
    if verb == 'predict':
      return rest.predict_response(out, rows)
    return rest.classify_response(out) if verb == 'classify' else rest.regress_response(out)

  def _on_batch(self, key, rows: int) -> None:
    name, version, signature = key
    self.metrics.observe(metrics_lib.BATCH_SIZE, {'model_name': name, 'version': str(version),
                                                 'signature': signature}, rows,
                         metrics_lib.BATCH_BUCKETS)
