"""`jestimator.inputs`: the input functions an Estimator's verbs take, as TF's
`tf.compat.v1.estimator.inputs` and more.

- `numpy_input_fn`, `pandas_input_fn`: in-memory arrays / DataFrames (resumable: their position
  is saved in every checkpoint).
- `tfrecord_input_fn`, `csv_input_fn`: files, resumable and shardable (from `jestimator.io`).
- `Resumable`: the protocol an input iterator implements to have its position checkpointed;
  `call_input_fn`: calls an input_fn as the Estimator does (for hand-written drivers).
"""
from jestimator.io.csv_input import csv_input_fn
from jestimator.io.input_fn import tfrecord_input_fn
from jestimator.pipeline.input_fn import Resumable, call_input_fn
from jestimator.pipeline.numpy_input import (NumpyInputFn, ResumableIterator, numpy_input_fn,
                                             pandas_input_fn)

__all__ = ['numpy_input_fn', 'pandas_input_fn', 'tfrecord_input_fn', 'csv_input_fn',
           'NumpyInputFn', 'ResumableIterator', 'Resumable', 'call_input_fn']
