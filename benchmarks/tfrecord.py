"""TF-compatible data path throughput on one CPU core: hashing, TFRecord reading, Example parsing.

- hashing: strings/s of `columns.fingerprint_strings` with TF's FarmHash (`hashing='tf'`, the
  default) and the legacy vectorised hash, on the 1M strings of the census string columns (Adult
  rows repeated), as numpy `str` arrays; and rows/s of a hash-bucket column's host stage over the
  same values as `str` arrays and as pandas-style `object` arrays (deduplicated before hashing).
- parsing: Examples/s of `io.parse_example` for the Adult schema in batches of 1024, with the
  census columns' `classifier_parse_example_spec` (6 numeric FixedLen float32, 8 string VarLen,
  an int64 label) and with every feature FixedLen [1] (as the TF fixture); the protobuf-library
  path the vectorised reader falls back to; records/s of `io.tfrecord_iterator` (plain and GZIP)
  and Examples/s of `tfrecord_input_fn` (read + shuffle + parse).

The process is pinned to one core; figures are the best of `--repeats` wall-clock runs. Results go
to benchmarks/results/tfrecord_cpu.json. Run: `python benchmarks/tfrecord.py [--repeats N]`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')

import numpy as np  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))

import jestimator.columns as fc  # noqa: E402
from benchmarks import _machine  # noqa: E402
from jestimator import io as jio  # noqa: E402
from jestimator.canned import classifier_parse_example_spec  # noqa: E402
from jestimator.datasets import adult  # noqa: E402
from jestimator.io import parsing  # noqa: E402

STRINGS = list(adult.CATEGORICAL_COLUMNS)
NUMBERS = list(adult.NUMERIC_COLUMNS)
_CPU: dict[str, float] = {}  # figure name -> the same rate by process CPU time (see `_rate`)


def _rate(name: str, out: dict, fn, units: int, repeats: int) -> None:
  """Records `units / best wall-clock second` of `fn` as `out[name]`, and the rate by process CPU
  time in `_CPU[name]`: on a shared machine wall clock includes time the core ran other work."""
  fn()  # warm caches
  wall = cpu = float('inf')
  for _ in range(repeats):
    w, c = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
  out[name] = round(units / wall)
  _CPU[name] = round(units / cpu)


def hashing(train: dict, repeats: int) -> dict:
  values = np.concatenate([train[k].astype(str) for k in STRINGS])
  values = np.tile(values, -(-1_000_000 // len(values)))[:1_000_000]
  out = {'strings': int(values.size), 'distinct': int(np.unique(values).size)}
  for mode in ('tf', 'legacy'):
    _rate(f'fingerprint_strings_{mode}_per_s', out,
          lambda m=mode: fc.fingerprint_strings(values, m), values.size, repeats)
  for mode in ('tf', 'legacy'):
    col = fc.categorical_column_with_hash_bucket('s', 1000, hashing=mode)
    stage = fc.host_stage([col])
    for kind, arr in (('str', values), ('object', values.astype(object))):
      _rate(f'hash_bucket_host_stage_{mode}_{kind}_rows_per_s', out,
            lambda s=stage, a=arr: s({'s': a}), values.size, repeats)
  # by CPU time: the wall-clock ratio moves with whatever else the machine runs
  out['tf_cost_vs_legacy_fingerprint_cpu'] = round(
      _CPU['fingerprint_strings_legacy_per_s'] / _CPU['fingerprint_strings_tf_per_s'], 2)
  return out


def census_spec() -> dict:
  """The census columns' spec: numeric FixedLen float32 [1], categorical VarLen string."""
  cols = ([fc.numeric_column(k) for k in NUMBERS] +
          [fc.categorical_column_with_hash_bucket(k, 1000) for k in STRINGS])
  return classifier_parse_example_spec(cols, 'label')


def fixed_spec() -> dict:
  """The spec of the TF fixture (tests/data/tf_fixtures): everything FixedLen [1]."""
  spec = {k: jio.FixedLenFeature([1], 'float32') for k in NUMBERS}
  spec.update({k: jio.FixedLenFeature([1], 'string') for k in STRINGS})
  spec['label'] = jio.FixedLenFeature([1], 'int64')
  return spec


def parsing_figures(train: dict, repeats: int, batch: int) -> dict:
  n = len(train['age'])
  rows = {k: train[k].astype(np.float32)[:, None] for k in NUMBERS}
  rows.update({k: train[k] for k in STRINGS})
  rows['label'] = (train[adult.LABEL_COLUMN] == '>50K').astype(np.int64)[:, None]
  records = jio.make_examples(rows)
  batches = [records[s:s + batch] for s in range(0, n - batch + 1, batch)]
  m = len(batches) * batch
  out = {'examples': n, 'batch_size': batch, 'features': len(rows),
         'mean_serialized_bytes': round(float(np.mean([len(r) for r in records])), 1)}
  for name, spec in (('varlen_strings', census_spec()), ('fixedlen', fixed_spec())):
    _rate(f'parse_example_{name}_per_s', out,
          lambda s=spec: [jio.parse_example(b, s) for b in batches], m, repeats)

  def proto(spec=census_spec()):
    for b in batches:
      collected = parsing._collect_proto(b, list(spec))
      {k: parsing._assemble(k, spec[k], *collected[k], len(b)) for k in spec}
  _rate('protobuf_path_varlen_strings_per_s', out, proto, m, max(1, repeats // 2))
  with tempfile.TemporaryDirectory() as d:
    for comp in (None, 'GZIP'):
      path = os.path.join(d, f'adult.tfrecord{".gz" if comp else ""}')
      jio.write_tfrecord(path, records, comp)
      _rate(f'tfrecord_read_{comp or "plain"}_records_per_s', out,
            lambda p=path, c=comp: sum(1 for _ in jio.tfrecord_iterator(p, c)), n, repeats)
      fn = jio.tfrecord_input_fn(path, census_spec(), label_key='label', batch_size=batch,
                                 shuffle=True, compression=comp, seed=0)
      _rate(f'tfrecord_input_fn_{comp or "plain"}_examples_per_s', out,
            lambda f=fn: sum(1 for _ in f()), n, max(1, repeats // 2))
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--batch', type=int, default=1024)
  parser.add_argument('--out', default=os.path.join(_HERE, 'results', 'tfrecord_cpu.json'))
  args = parser.parse_args(argv)
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  train, _ = adult.load()
  from importlib import metadata
  machine = _machine.machine_info()
  machine['versions'].update({p: metadata.version(p) for p in ('protobuf', 'pyfarmhash',
                                                                'google-crc32c', 'pandas')})
  machine.update(cores_used=1, load_average_1min=round(os.getloadavg()[0], 2))
  result = {
      'benchmark': 'TF-compatible data path: hashing, TFRecord reading, tf.Example parsing',
      'machine': machine,
      'method': f'best of {args.repeats} runs, process pinned to one core; figures by wall clock, '
                'by_process_cpu_time the same by CPU time (other work may share the machine: '
                'see load_average_1min)',
      'targets': {'hashed_strings_per_s': 1_000_000, 'parse_examples_per_s': 100_000},
      'hashing': hashing(train, args.repeats),
      'parsing': parsing_figures(train, args.repeats, args.batch),
  }
  result['by_process_cpu_time'] = dict(_CPU)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))
  return result


if __name__ == '__main__':
  main()
