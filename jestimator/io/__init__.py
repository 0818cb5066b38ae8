"""TensorFlow data without TensorFlow: TFRecord files, tf.train.Example parsing, parse specs.

- `tfrecord_iterator(path, compression=None|'GZIP')`, `TFRecordReader`, `TFRecordWriter`: TFRecord
  files with every record's masked CRC32C checked (`DataLossError` names the file and record).
- `FixedLenFeature`, `VarLenFeature`, `parse_example(serialized, spec)`: TF's parse specs and
  `tf.io.parse_example`, returning numpy (vectorised over the batch).
- `tfrecord_input_fn(...)`: a resumable, shardable Estimator input_fn over TFRecord files (also
  `jestimator.inputs.tfrecord_input_fn`).
- `csv_input_fn(...)`: TF's `make_csv_dataset` (and `TextLineDataset` + `decode_csv`) as a
  resumable, shardable input_fn (also `jestimator.inputs.csv_input_fn`).
- `make_examples`, `write_tfrecord`, `example_pb`: writing Examples (from numpy columns, or with
  the `tf.train.Example` protobuf messages themselves).

This package depends on numpy, protobuf, google-crc32c only (never on the training loops).
"""
from __future__ import annotations

from jestimator.io import example_pb
from jestimator.io.csv_input import csv_input_fn
from jestimator.io.examples import make_examples, write_tfrecord
from jestimator.io.input_fn import tfrecord_input_fn
from jestimator.io.parsing import (
    FixedLenFeature, SparseTensorValue, VarLenFeature, merge_parse_specs, parse_example, to_sparse)
from jestimator.io.tfrecord import (
    DataLossError, TFRecordReader, TFRecordWriter, masked_crc32c, tfrecord_iterator)

__all__ = ['csv_input_fn', 'DataLossError', 'FixedLenFeature', 'SparseTensorValue',
           'TFRecordReader', 'TFRecordWriter', 'VarLenFeature', 'example_pb', 'make_examples',
           'masked_crc32c', 'merge_parse_specs', 'parse_example', 'tfrecord_input_fn', 'tfrecord_iterator', 'to_sparse', 'write_tfrecord']
