"""Serving speed of an exported census DNN: in-process `ServedModel.predict` and the REST server.

Trains a `DNNClassifier` on UCI Adult (raw string columns, vocabularies and z-scores learned by
`columns.analyze`) for a few hundred steps, exports it, then measures
- in-process: p50 latency of one raw row, and examples/sec at batch 1 and 1024;
- REST (`python -m jestimator.serve` in its own process, clients on 127.0.0.1 with keep-alive):
  p50 / p99 latency of single-instance requests from one client, and requests/sec, p50 / p99
  with `--clients` concurrent clients (their requests are batched together by the server).
Writes `benchmarks/results/serving_<backend>.json`.

  python -m benchmarks.serving [--clients 8] [--requests 2000]

Targets on a 2-core CPU machine: in-process batch-1 p50 under 1 ms; REST single-instance p50
under 5 ms.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import jestimator as je
from benchmarks._machine import machine_info, peak_rss_mib, write_results
from jestimator import columns as fc
from jestimator import export
from jestimator.canned.dnn import DNNClassifier
from jestimator.datasets import adult

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_and_export(steps: int) -> tuple[str, dict[str, np.ndarray]]:
  """Trains the census DNN for `steps` and exports it; returns (export path, raw test data)."""
  train, test = adult.load()
  labels = train.pop('income_bracket')
  test.pop('income_bracket')
  numeric = [fc.numeric_column(k, normalizer='zscore')
             for k in ('age', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week')]
  vocab = [fc.indicator_column(fc.categorical_column_with_vocabulary_list(k, None))
           for k in ('workclass', 'education', 'marital_status', 'relationship', 'race', 'gender')]
  hashed = [fc.embedding_column(fc.categorical_column_with_hash_bucket(k, 1000), 8)
            for k in ('occupation', 'native_country')]
  cols = fc.analyze(numeric + vocab + hashed, train)
  model_dir = tempfile.mkdtemp(prefix='serving_bench_')
  est = DNNClassifier([100, 50], cols, model_dir=model_dir,
                      label_vocabulary=list(adult.LABEL_VOCABULARY), config=je.RunConfig(seed=0))
  n = len(labels)

  def input_fn():
    rng = np.random.default_rng(0)
    for _ in range(steps):
      idx = rng.integers(0, n, 256)
      yield {k: v[idx] for k, v in train.items()}, labels[idx]

  est.train(input_fn, max_steps=steps)
  return est.export_saved_model(os.path.join(model_dir, 'export')), test


def _percentiles(times: list[float]) -> dict[str, float]:
  ms = np.asarray(times) * 1e3
  return {'p50_ms': float(np.percentile(ms, 50)), 'p90_ms': float(np.percentile(ms, 90)),
          'p99_ms': float(np.percentile(ms, 99)), 'mean_ms': float(ms.mean())}


def _batch1(model, rows, repeats: int) -> dict:
  for i in range(200):
    model.predict(rows[i % len(rows)])
  times = []
  for i in range(repeats):
    t = time.perf_counter()
    model.predict(rows[i % len(rows)])
    times.append(time.perf_counter() - t)
  out = _percentiles(times)
  out['examples_per_sec'] = repeats / sum(times)
  return out


def in_process(path: str, test: dict, repeats: int) -> dict:
  model = export.load(path)
  model.warmup((1, 1024))
  # One raw row as a client holds it (Python lists), and as numpy slices of the object columns.
  rows = [{k: v[i:i + 1].tolist() for k, v in test.items()} for i in range(256)]
  batch1 = _batch1(model, rows, repeats)
  batch1_arrays = _batch1(model, [{k: v[i:i + 1] for k, v in test.items()} for i in range(256)],
                          repeats)
  big = {k: v[:1024] for k, v in test.items()}
  model.predict(big)
  n_big = max(10, repeats // 100)
  t = time.perf_counter()
  for _ in range(n_big):
    model.predict(big)
  dt = time.perf_counter() - t
  # Where batch-1 time goes: host stage (feature columns) vs the compiled program.
  feats, n = model.check(rows[0])
  host = []
  for _ in range(min(repeats, 2000)):
    t0 = time.perf_counter()
    model._device_features(feats)
    host.append(time.perf_counter() - t0)
  return {'batch_1': batch1, 'batch_1_numpy_object_arrays': batch1_arrays,
          'batch_1024': {'examples_per_sec': n_big * 1024 / dt, 'ms_per_batch': dt / n_big * 1e3},
          'batch_1_host_stage_p50_ms': float(np.median(host) * 1e3)}


def _rows_json(test: dict, idx) -> list[dict]:
  return [{k: (v[i].item() if isinstance(v[i], np.generic) else v[i]) for k, v in test.items()}
          for i in idx]


def _post(conn, path: str, body: bytes) -> dict:
  conn.request('POST', path, body=body, headers={'Content-Type': 'application/json'})
  r = conn.getresponse()
  data = r.read()
  if r.status != 200:
    raise RuntimeError(f'HTTP {r.status}: {data[:200]}')
  return json.loads(data)


def rest(path: str, test: dict, requests: int, clients: int, max_batch_size: int) -> dict:
  env = dict(os.environ, PYTHONPATH=_REPO)
  proc = subprocess.Popen(
      [sys.executable, '-m', 'jestimator.serve', '--export_dir', path, '--model_name', 'census',
       '--port', '0', '--max_batch_size', str(max_batch_size),
       '--warmup', ','.join(str(2 ** i) for i in range(max_batch_size.bit_length()))],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  try:
    line = ''
    while 'Serving' not in line:
      line = proc.stdout.readline()
      if not line:
        raise RuntimeError('server exited early')
    port = int(line.rsplit(':', 1)[1])
    url = '/v1/models/census:predict'
    bodies = [json.dumps({'instances': _rows_json(test, [i])}).encode() for i in range(256)]

    conn = http.client.HTTPConnection('127.0.0.1', port)
    for b in bodies[:50]:
      _post(conn, url, b)
    times = []
    for i in range(requests):
      t = time.perf_counter()
      _post(conn, url, bodies[i % 256])
      times.append(time.perf_counter() - t)
    conn.close()
    single = _percentiles(times)
    single['requests_per_sec'] = requests / sum(times)

    per_client = max(1, requests // clients)
    lat = [[] for _ in range(clients)]

    def client(c):
      cn = http.client.HTTPConnection('127.0.0.1', port)
      for i in range(per_client):
        t = time.perf_counter()
        _post(cn, url, bodies[(c * 31 + i) % 256])
        lat[c].append(time.perf_counter() - t)
      cn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    wall = time.perf_counter() - t0
    concurrent = _percentiles([x for c in lat for x in c])
    concurrent.update({'clients': clients, 'requests_per_sec': clients * per_client / wall})
    return {'single_client': single, 'concurrent': concurrent}
  finally:
    os.kill(proc.pid, signal.SIGKILL)  # jax swallows SIGTERM
    proc.wait()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--train_steps', type=int, default=300)
  parser.add_argument('--repeats', type=int, default=5000, help='in-process batch-1 calls')
  parser.add_argument('--requests', type=int, default=2000, help='REST requests per phase')
  parser.add_argument('--clients', type=int, default=8)
  parser.add_argument('--max_batch_size', type=int, default=64)
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv)
  t = time.time()
  path, test = train_and_export(args.train_steps)
  print(f'trained and exported in {time.time() - t:.1f} s: {path}')
  results = {'machine': machine_info(), 'config': vars(args), 'model': 'census DNNClassifier '
             '[100, 50], 5 numeric (z-score) + 6 vocabulary (indicator) + 2 hashed (embedding 8)'}
  results['in_process'] = in_process(path, test, args.repeats)
  ip = results['in_process']
  print(f"in-process batch 1: p50 {ip['batch_1']['p50_ms']:.3f} ms, p99 "
        f"{ip['batch_1']['p99_ms']:.3f} ms, {ip['batch_1']['examples_per_sec']:,.0f} ex/s "
        f"(host stage p50 {ip['batch_1_host_stage_p50_ms']:.3f} ms; numpy object arrays p50 "
        f"{ip['batch_1_numpy_object_arrays']['p50_ms']:.3f} ms); batch 1024: "
        f"{ip['batch_1024']['examples_per_sec']:,.0f} ex/s")
  results['rest'] = rest(path, test, args.requests, args.clients, args.max_batch_size)
  s, c = results['rest']['single_client'], results['rest']['concurrent']
  print(f"REST single client: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, "
        f"{s['requests_per_sec']:,.0f} req/s")
  print(f"REST {c['clients']} clients: p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms, "
        f"{c['requests_per_sec']:,.0f} req/s")
  results['targets_met'] = {'in_process_batch1_p50_under_1ms': ip['batch_1']['p50_ms'] < 1.0,
                            'rest_single_p50_under_5ms': s['p50_ms'] < 5.0}
  results['peak_rss_mib'] = peak_rss_mib()
  out = args.out or os.path.join(os.path.dirname(__file__), 'results', 'serving_cpu.json')
  write_results(results, out)


if __name__ == '__main__':
  main()
