"""Server metrics in Prometheus' text exposition format (GET /monitoring/prometheus/metrics).

Names follow TF Serving's (`:tensorflow:serving:...`), so existing dashboards find them:

  :tensorflow:serving:request_count{model_name, version, API, entrypoint, status}    counter
  :tensorflow:serving:request_latency{model_name, version, API, entrypoint}          histogram, us
  :tensorflow:serving:batch_size{model_name, version, signature}                     histogram, rows

`status` is TF's status code name (OK, INVALID_ARGUMENT, NOT_FOUND, ...). Only the standard
library: the text format is small, and the server must not need `prometheus_client`.
"""
from __future__ import annotations

import bisect
import threading
from typing import Mapping

REQUEST_COUNT = ':tensorflow:serving:request_count'
REQUEST_LATENCY = ':tensorflow:serving:request_latency'
BATCH_SIZE = ':tensorflow:serving:batch_size'
# Microseconds (TF Serving's unit): 100 us .. ~105 s in factors of 2.
LATENCY_BUCKETS_US = tuple(100.0 * 2 ** i for i in range(21))
BATCH_BUCKETS = tuple(float(2 ** i) for i in range(14))  # 1 .. 8192 rows

_HELP = {REQUEST_COUNT: ('counter', 'The number of requests, by API and status.'),
         REQUEST_LATENCY: ('histogram', 'Request latency in microseconds, by API.'),
         BATCH_SIZE: ('histogram', 'Rows per executed (merged) batch.')}

_STATUS = {200: 'OK', 400: 'INVALID_ARGUMENT', 404: 'NOT_FOUND', 405: 'UNIMPLEMENTED',
           408: 'DEADLINE_EXCEEDED', 411: 'INVALID_ARGUMENT', 413: 'RESOURCE_EXHAUSTED',
           500: 'INTERNAL', 501: 'UNIMPLEMENTED', 503: 'UNAVAILABLE'}


def status_name(code: int) -> str:
  """TF's status code name for an HTTP status."""
  return _STATUS.get(code, 'UNKNOWN')


class Registry:
  """Thread-safe counters and histograms; `render()` gives the exposition text."""

  def __init__(self):
    self._lock = threading.Lock()
    self._counters: dict[tuple[str, tuple], float] = {}
    self._histograms: dict[tuple[str, tuple], list] = {}  # [bucket counts..., sum, count]

  def count(self, name: str, labels: Mapping[str, str], value: float = 1.0) -> None:
    key = (name, tuple(sorted(labels.items())))
    with self._lock:
      self._counters[key] = self._counters.get(key, 0.0) + value

  def observe(self, name: str, labels: Mapping[str, str], value: float,
              buckets: tuple[float, ...]) -> None:
    key = (name, tuple(sorted(labels.items())))
    with self._lock:
      h = self._histograms.get(key)
      if h is None:
        h = self._histograms[key] = [buckets, [0] * len(buckets), 0.0, 0]
      i = bisect.bisect_left(buckets, value)  # le-buckets: value <= bound
      if i < len(buckets):
        h[1][i] += 1
      h[2] += value
      h[3] += 1

  def render(self) -> str:
    with self._lock:
      counters = sorted(self._counters.items())
      histograms = sorted((k, (v[0], list(v[1]), v[2], v[3])) for k, v in
                          self._histograms.items())
    lines: list[str] = []
    for name in sorted(_HELP):
      kind, text = _HELP[name]
      lines += [f'# HELP {name} {text}', f'# TYPE {name} {kind}']
      for (n, labels), value in counters:
        if n == name:
          lines.append(f'{name}{_labels(labels)} {_number(value)}')
      for (n, labels), (bounds, counts, total, count) in histograms:
        if n != name:
          continue
        running = 0
        for bound, c in zip(bounds, counts):
          running += c
          lines.append(f'{name}_bucket{_labels(labels + (("le", _number(bound)),))} {running}')
        lines.append(f'{name}_bucket{_labels(labels + (("le", "+Inf"),))} {count}')
        lines.append(f'{name}_sum{_labels(labels)} {_number(total)}')
        lines.append(f'{name}_count{_labels(labels)} {count}')
    return '\n'.join(lines) + '\n'


def _number(v: float) -> str:
  return str(int(v)) if float(v).is_integer() else repr(float(v))


def _labels(labels: tuple) -> str:
  if not labels:
    return ''
  escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
             .replace('\n', '\\n') for k, v in labels)
  return '{' + ','.join(escaped) + '}'
