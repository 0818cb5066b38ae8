"""`classifier_parse_example_spec` / `regressor_parse_example_spec` (TF's `parsing_utils`).

The parse spec of a canned estimator's training data: the feature columns' spec plus the label
(and the weight column, when given), for `jestimator.io.parse_example` or `tfrecord_input_fn`.
"""
from __future__ import annotations

from typing import Any

from jestimator import columns as fc
from jestimator.io import FixedLenFeature, merge_parse_specs


def _add_label_and_weight(spec: dict, label_key: str, label_spec: FixedLenFeature,
                          weight_column: Any, what: str) -> dict:
  if not isinstance(label_key, str) or not label_key:
    raise ValueError(f'{what}: label_key must be a non-empty string, got {label_key!r}')
  if label_key in spec:
    raise ValueError(f"{what}: label_key '{label_key}' is also read by the feature columns "
                     f'({spec[label_key]}); a label should not be used as a feature')
  extra = [{label_key: label_spec}]
  if weight_column is not None:
    if isinstance(weight_column, str):
      weight_column = fc.numeric_column(weight_column)
    if not isinstance(weight_column, fc.NumericColumn):
      raise ValueError(f'{what}: weight_column must be a str or a numeric_column, got '
                       f'{weight_column!r:.80}')
    extra.append(weight_column.parse_example_spec)
  return merge_parse_specs([spec] + extra, what)


def classifier_parse_example_spec(feature_columns, label_key: str, label_dtype: Any = 'int64',
                                  label_default: Any = None, weight_column: Any = None) -> dict:
  """The columns' parse spec plus `label_key: FixedLenFeature([1], label_dtype, label_default)`.

  `label_dtype`: 'int64' (class ids) or 'string' (with `label_vocabulary` in the classifier).
  Example::

    spec = classifier_parse_example_spec(cols, label_key='label', label_dtype='string')
    input_fn = jestimator.inputs.tfrecord_input_fn('train-*.tfrecord', spec, label_key='label')
  """
  what = 'classifier_parse_example_spec'
  spec = fc.make_parse_example_spec(feature_columns)
  label = FixedLenFeature((1,), label_dtype, label_default)
  return _add_label_and_weight(spec, label_key, label, weight_column, what)


def regressor_parse_example_spec(feature_columns, label_key: str, label_dtype: Any = 'float32',
                                 label_default: Any = None, label_dimension: int = 1,
                                 weight_column: Any = None) -> dict:
  """The columns' parse spec plus
  `label_key: FixedLenFeature([label_dimension], label_dtype, label_default)`."""
  what = 'regressor_parse_example_spec'
  spec = fc.make_parse_example_spec(feature_columns)
  if isinstance(label_dimension, bool) or not isinstance(label_dimension, int) or \
      label_dimension < 1:
    raise ValueError(f'{what}: label_dimension must be a positive int, got {label_dimension!r}')
  label = FixedLenFeature((label_dimension,), label_dtype, label_default)
  return _add_label_and_weight(spec, label_key, label, weight_column, what)
