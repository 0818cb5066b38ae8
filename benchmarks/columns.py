"""Host-stage throughput of feature columns on the UCI Adult census columns.

The columns of the classic TensorFlow census (wide & deep) tutorial: 8 string columns (6
vocabulary lists, 2 hash buckets), 5 numeric columns, a bucketized age and 3 crossed columns
(including a 3-way cross with the age buckets). Measures rows/second of `host_stage(cols)(raw)`:
- whole array: the full training set (32,561 rows) in one call, as `numpy_input_fn` does;
- per batch: consecutive batches of 256 rows, one call each (an input pipeline feeding raw batches).
Each is measured for string columns given as numpy `str` arrays and as pandas' default `object`
arrays. The process is pinned to one CPU core. Results go to benchmarks/results/columns_cpu.json.

Run: `python benchmarks/columns.py [--csv PATH] [--repeats N]`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import jestimator.columns as fc  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
# The bundled training split (jestimator/datasets/data/adult_train.csv.gz); pandas reads gzip.
DEFAULT_CSV = os.path.join(_HERE, '..', 'jestimator', 'datasets', 'data', 'adult_train.csv.gz')
STRING_COLUMNS = ['workclass', 'education', 'marital_status', 'occupation', 'relationship', 'race',
                  'gender', 'native_country']
NUMERIC_COLUMNS = ['age', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week']


def census_columns() -> list[fc.FeatureColumn]:
  """The census tutorial's wide and deep columns (vocabularies as in the tutorial)."""
  vocab = fc.categorical_column_with_vocabulary_list
  gender = vocab('gender', ['Female', 'Male'])
  education = vocab('education', [
      'Bachelors', 'HS-grad', '11th', 'Masters', '9th', 'Some-college', 'Assoc-acdm',
      'Assoc-voc', '7th-8th', 'Doctorate', 'Prof-school', '5th-6th', '10th', '1st-4th',
      'Preschool', '12th'])
  marital = vocab('marital_status', [
      'Married-civ-spouse', 'Divorced', 'Married-spouse-absent', 'Never-married', 'Separated',
      'Married-AF-spouse', 'Widowed'])
  relationship = vocab('relationship', [
      'Husband', 'Not-in-family', 'Wife', 'Own-child', 'Unmarried', 'Other-relative'])
  workclass = vocab('workclass', [
      'Self-emp-not-inc', 'Private', 'State-gov', 'Federal-gov', 'Local-gov', '?',
      'Self-emp-inc', 'Without-pay', 'Never-worked'])
  race = vocab('race', ['White', 'Black', 'Asian-Pac-Islander', 'Amer-Indian-Eskimo', 'Other'])
  occupation = fc.categorical_column_with_hash_bucket('occupation', 1000)
  country = fc.categorical_column_with_hash_bucket('native_country', 1000)
  age = fc.numeric_column('age')
  age_buckets = fc.bucketized_column(age, [18, 25, 30, 35, 40, 45, 50, 55, 60, 65])
  numerics = [fc.numeric_column(k) for k in NUMERIC_COLUMNS]
  wide = [gender, education, marital, relationship, workclass, race, occupation, country,
          age_buckets,
          fc.crossed_column(['education', 'occupation'], 1000),
          fc.crossed_column([age_buckets, 'education', 'occupation'], 1000),
          fc.crossed_column(['native_country', 'occupation'], 1000)]
  deep = numerics + [fc.indicator_column(c) for c in (workclass, education, gender, relationship,
                                                      race, marital)] + [
      fc.embedding_column(country, 8), fc.embedding_column(occupation, 8)]
  return wide + deep


def load(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(features with `str` arrays, the same with pandas `object` arrays)."""
  df = pd.read_csv(path)
  obj = {k: df[k].to_numpy() for k in STRING_COLUMNS}
  obj.update({k: df[k].to_numpy(np.float32) for k in NUMERIC_COLUMNS})
  strs = dict(obj)
  strs.update({k: df[k].to_numpy(dtype=str) for k in STRING_COLUMNS})
  return strs, obj


def _best(fn, repeats: int) -> float:
  fn()  # warm caches
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def _per_batch(stage, raw, n: int, batch: int):
  slices = [{k: v[s:s + batch] for k, v in raw.items()} for s in range(0, n - batch + 1, batch)]
  def run():
    for b in slices:
      stage(b)
  return run, len(slices) * batch


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--csv', default=DEFAULT_CSV)
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--out', default=os.path.join(_HERE, 'results', 'columns_cpu.json'))
  args = parser.parse_args(argv)
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  strs, obj = load(args.csv)
  n = len(strs['age'])
  stage = fc.host_stage(census_columns())
  out = stage(strs)
  figures = {}
  for label, raw in (('str_arrays', strs), ('object_arrays', obj)):
    t_whole = _best(lambda raw=raw: stage(raw), args.repeats)
    run, rows = _per_batch(stage, raw, n, args.batch)
    t_batch = _best(run, max(2, args.repeats // 3))
    figures[label] = {
        'whole_array_rows_per_s': round(n / t_whole),
        'whole_array_seconds': round(t_whole, 5),
        f'per_batch_{args.batch}_rows_per_s': round(rows / t_batch),
        f'per_batch_{args.batch}_ms_per_batch': round(1e3 * t_batch * args.batch / rows, 4),
    }
  import jax
  result = {
      'benchmark': 'jestimator.columns host stage, UCI Adult census columns',
      'data': {'csv': args.csv, 'rows': n, 'string_columns': STRING_COLUMNS,
               'numeric_columns': NUMERIC_COLUMNS, 'crossed_columns': 3,
               'output_arrays': len(out)},
      'machine': {'platform': platform.platform(), 'processor': _cpu_name(),
                  'cores_used': 1, 'cpu_count': os.cpu_count(),
                  'load_average_1min': round(os.getloadavg()[0], 2),  # other work shares the CPUs
                  'python': sys.version.split()[0]},
      'method': f'best of {args.repeats} runs (per batch: best of {max(2, args.repeats // 3)} '
                'passes over the data), wall clock, process pinned to one core',
      'versions': {'numpy': np.__version__, 'pandas': pd.__version__, 'jax': jax.__version__},
      'target_whole_array_rows_per_s': 1_000_000,
      'figures': figures,
  }
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))
  return result


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


if __name__ == '__main__':
  main()
