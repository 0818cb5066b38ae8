"""The UCI Adult ("Census Income") data set, bundled (CC BY 4.0).

Dataset: UCI Machine Learning Repository, "Adult" (Becker & Kohavi, 1996), DOI 10.24432/C5XW20,
licensed CC BY 4.0. The copy here is the classic TensorFlow census tutorial's cleaning of the
original files; `data/README.md` records its source, checksums and normalisation.
"""
from __future__ import annotations

import csv
import gzip
import os

import numpy as np

COLUMNS = ('age', 'workclass', 'fnlwgt', 'education', 'education_num', 'marital_status',
           'occupation', 'relationship', 'race', 'gender', 'capital_gain', 'capital_loss',
           'hours_per_week', 'native_country', 'income_bracket')
NUMERIC_COLUMNS = ('age', 'fnlwgt', 'education_num', 'capital_gain', 'capital_loss',
                   'hours_per_week')
CATEGORICAL_COLUMNS = ('workclass', 'education', 'marital_status', 'occupation', 'relationship',
                       'race', 'gender', 'native_country')
LABEL_COLUMN = 'income_bracket'
LABEL_VOCABULARY = ('<=50K', '>50K')

_DATA_DIR = os.path.join(os.path.dirname(__file__), 'data')


def _read(split: str) -> dict[str, np.ndarray]:
  path = os.path.join(_DATA_DIR, f'adult_{split}.csv.gz')
  with gzip.open(path, 'rt', newline='') as f:
    reader = csv.reader(f)
    header = next(reader)
    rows = list(reader)
  if tuple(header) != COLUMNS:
    raise ValueError(f'{path}: unexpected header {header}')
  table = np.array(rows, dtype=str)
  out = {}
  for i, name in enumerate(COLUMNS):
    col = table[:, i]
    out[name] = col.astype(np.int64) if name in NUMERIC_COLUMNS else col.astype(object)
  return out


def load(split: str | None = None):
  """The Adult data as dicts of numpy arrays (one entry per column).

  Args:
    split: 'train' (32,561 rows), 'test' (16,281 rows), or None for both.

  Returns:
    `{column: array}` for one split (numeric columns int64, the others object arrays of str; the
    label column `income_bracket` holds '<=50K' / '>50K'), or `(train, test)` when split is None.
    Missing values are the literal '?', as in the original files.

  Example:
    train, test = jestimator.datasets.adult.load()
    labels = train.pop('income_bracket')
  """
  if split is None:
    return _read('train'), _read('test')
  if split not in ('train', 'test'):
    raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
  return _read(split)
