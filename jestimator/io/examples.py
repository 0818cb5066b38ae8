"""Building serialized `tf.train.Example`s from numpy columns, and writing them to TFRecords.

For tests, examples, data conversion and clients of a parsing serving signature (a per-row loop:
tooling, not a training hot path). Training reads them back with `parse_example` or
`tfrecord_input_fn`.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from jestimator.io import example_pb, tfrecord


def _values(key: str, row: Any) -> tuple[str, list] | None:
  """(list field name, values) of one row of one feature; None for no value."""
  if row is None:
    return None
  vals = list(row) if isinstance(row, (list, tuple, np.ndarray)) else [row]
  if not vals:
    return None
  first = vals[0]
  if isinstance(first, (str, bytes, np.str_, np.bytes_)):
    return 'bytes_list', [v.encode('utf-8') if isinstance(v, str) else bytes(v) for v in vals]
  if isinstance(first, (bool, np.bool_)) or not isinstance(first, (int, float, np.integer,
                                                                   np.floating)):
    raise TypeError(f"make_examples: feature '{key}' holds {type(first).__name__} values; "
                    'tf.Example holds bytes/str, int and float values')
  if isinstance(first, (int, np.integer)):
    return 'int64_list', [int(v) for v in vals]
  return 'float_list', [float(v) for v in vals]


def make_examples(features: Mapping[str, Any]) -> list[bytes]:
  """Serialized Examples, one per row of `features` (`{key: array [n, ...] or n lists}`).

  Floats become `float_list`, integers `int64_list`, str/bytes `bytes_list` (str as UTF-8); a row
  that is a list or array gives several values, None or an empty list leaves the feature out.
  Example: `make_examples({'age': np.array([[39.], [50.]]), 'tags': [[1, 2], []]})`.
  """
  if not isinstance(features, Mapping) or not features:
    raise TypeError('make_examples: features must be a non-empty dict of arrays')
  cols = {k: (v if isinstance(v, list) else np.asarray(v).tolist()) for k, v in features.items()}
  sizes = {k: len(v) for k, v in cols.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f'make_examples: features disagree on the number of rows: {sizes}')
  out = []
  for i in range(next(iter(sizes.values()))):
    ex = example_pb.Example()
    fmap = ex.features.feature
    for k, col in cols.items():
      got = _values(k, col[i])
      if got is not None:
        getattr(fmap[k], got[0]).value.extend(got[1])
    out.append(ex.SerializeToString())
  return out


def write_tfrecord(path: str, records: Iterable[bytes], compression: str | None = None) -> int:
  """Writes `records` to a TFRecord file; returns how many were written."""
  n = 0
  with tfrecord.TFRecordWriter(path, compression) as w:
    for r in records:
      w.write(r)
      n += 1
  return n
