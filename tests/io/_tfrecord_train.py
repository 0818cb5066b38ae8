"""A LinearClassifier trained from TFRecord files, in this process or a fresh one (resume tests).

Usage: python _tfrecord_train.py '{"model_dir": ..., "pattern": ..., "max_steps": 12}'
Prints one JSON line `{"global_step": n}` when done.
"""
from __future__ import annotations

import json
import sys

import numpy as np

import jestimator as je
from jestimator import columns as fc
from jestimator import io as jio
from jestimator.canned import classifier_parse_example_spec
from jestimator.datasets import adult

NUMERIC = ('age', 'education_num', 'hours_per_week')
STRINGS = ('education', 'occupation', 'workclass')


def columns() -> list:
  return ([fc.numeric_column(k) for k in NUMERIC] +
          [fc.categorical_column_with_hash_bucket(k, 64) for k in STRINGS] +
          [fc.crossed_column(['education', 'occupation'], 256)])


def adult_rows(n: int) -> tuple[dict, np.ndarray]:
  """The first n Adult training rows: (raw features as numpy_input_fn takes them, int labels)."""
  train, _ = adult.load()
  y = (train['income_bracket'][:n] == '>50K').astype(np.int64)
  x = {k: (train[k][:n].astype(np.float32) / 10)[:, None] for k in NUMERIC}
  x.update({k: train[k][:n] for k in STRINGS})
  return x, y


def write_files(directory: str, n: int, n_files: int, compression=None) -> str:
  """Writes the rows to `n_files` TFRecord files (consecutive slices); returns their glob."""
  x, y = adult_rows(n)
  records = jio.make_examples({**x, 'label': y[:, None]})
  for i, part in enumerate(np.array_split(np.arange(n), n_files)):
    jio.write_tfrecord(f'{directory}/part-{i}.tfrecord', [records[j] for j in part], compression)
  return f'{directory}/part-*.tfrecord'


def input_fn(pattern: str, **kw):
  spec = classifier_parse_example_spec(columns(), 'label')
  kw = {'batch_size': 32, 'num_epochs': None, 'shuffle': True, 'shuffle_buffer_size': 150, **kw}
  return jio.tfrecord_input_fn(pattern, spec, label_key='label', **kw)


def estimator(model_dir: str) -> je.LinearClassifier:
  return je.LinearClassifier(columns(), model_dir=model_dir,
                             config=je.RunConfig(seed=7, log_step_count_steps=10_000))


def main() -> None:
  args = json.loads(sys.argv[1])
  est = estimator(args['model_dir'])
  est.train(input_fn(args['pattern']), max_steps=args['max_steps'])
  print(json.dumps({'global_step': int(est.get_variable_value('global_step'))}), flush=True)


if __name__ == '__main__':
  main()
