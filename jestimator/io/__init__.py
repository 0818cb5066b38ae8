"""TensorFlow data without TensorFlow: TFRecord files, tf.train.Example parsing, parse specs.

- `tfrecord_iterator(path, compression=None|'GZIP')`, `TFRecordReader`, `TFRecordWriter`: TFRecord
  files with every record's masked CRC32C checked (`DataLossError` names the file and record).
- `FixedLenFeature`, `VarLenFeature`, `parse_example(serialized, spec)`: TF's parse specs and
  `tf.io.parse_example`, returning numpy (vectorised over the batch).
- `tfrecord_input_fn(...)`: a resumable, shardable Estimator input_fn over TFRecord files (also
  `jestimator.inputs.tfrecord_input_fn`).
- `example_pb`: the `tf.train.Example` protobuf messages (for writing Examples).

This package depends on numpy, protobuf, google-crc32c only (never on the training loops).
"""
from __future__ import annotations

from jestimator.io import example_pb
from jestimator.io.parsing import (
    FixedLenFeature, VarLenFeature, merge_parse_specs, parse_example, to_sparse)
from jestimator.io.tfrecord import (
    DataLossError, TFRecordReader, TFRecordWriter, masked_crc32c, tfrecord_iterator)

__all__ = ['DataLossError', 'FixedLenFeature', 'TFRecordReader', 'TFRecordWriter', 'VarLenFeature',
           'example_pb', 'masked_crc32c', 'merge_parse_specs', 'parse_example', 'tfrecord_iterator',
           'to_sparse']
