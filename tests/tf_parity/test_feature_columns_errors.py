"""TF's error classes and the arguments TF accepts or refuses (issue 21).

`data/feature_columns_cases.json['refusals']` records what TF 2.15 does with each call
(`tf_scripts/feature_columns_cases.py`); the error checks below are TF's own
(`feature_column_v2_test.py`, `assertRaisesRegex(ValueError, ...)`). jestimator raises
`ColumnTypeError` for a wrong type or dtype: both a `TypeError` and a `ValueError`, so a ported
`except ValueError` catches it.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jestimator.columns as fc
from tests.tf_parity._feature_columns import dense_features_case

DATA = os.path.join(os.path.dirname(__file__), 'data', 'feature_columns_cases.json')
with open(DATA) as f:
  REFUSALS = json.load(f)['refusals']

ident = lambda: fc.categorical_column_with_identity('a', 3)  # noqa: E731


def test_column_type_error_is_both_classes():
  assert issubclass(fc.ColumnTypeError, TypeError) and issubclass(fc.ColumnTypeError, ValueError)


# Checks where TF raises ValueError (feature_column_v2_test.py) and jestimator a type error.
TF_VALUE_ERRORS = {
    'numeric_column string dtype': lambda: fc.numeric_column('a', dtype=str),
    'numeric_column non-callable normalizer_fn':
        lambda: fc.numeric_column('a', normalizer_fn='not a function'),
    'numeric_column string default_value': lambda: fc.numeric_column('a', default_value='x'),
    'bucketized_column of a categorical source':
        lambda: fc.bucketized_column(ident(), [0., 1.]),
    'hash_bucket float dtype': lambda: fc.categorical_column_with_hash_bucket('a', 10, dtype=float),
    'vocabulary_list float values': lambda: fc.categorical_column_with_vocabulary_list(
        'a', [1.0, 2.0]),
    'vocabulary_list dtype mismatch': lambda: fc.categorical_column_with_vocabulary_list(
        'a', ['x', 'y'], dtype='int64'),
    'vocabulary_list int default_value type': lambda: fc.categorical_column_with_vocabulary_list(
        'a', ['x', 'y'], default_value='x'),
    'weighted string dtype': lambda: fc.weighted_categorical_column(ident(), 'w', dtype=str),
    'weighted int dtype': lambda: fc.weighted_categorical_column(ident(), 'w', dtype='int32'),
    'weighted of a non-categorical column': lambda: fc.weighted_categorical_column(
        fc.numeric_column('x'), 'w'),
    'embedding initializer not callable': lambda: fc.embedding_column(ident(), 2,
                                                                      initializer='zeros'),
    'embedding of a dense column': lambda: fc.embedding_column(fc.numeric_column('x'), 2),
    'indicator of a dense column': lambda: fc.indicator_column(fc.numeric_column('x')),
    'crossed key of a wrong type': lambda: fc.crossed_column(['a', 1.5], 10),
    'DenseFeatures item not a column': lambda: fc.transform_features({'a': [1]}, ['a']),
    'hash column fed floats': lambda: fc.transform_features(
        {'a': np.array([1.5, 2.5])}, [fc.categorical_column_with_hash_bucket('a', 10)]),
    'identity column fed strings': lambda: fc.transform_features(
        {'a': np.array(['1'])}, [fc.categorical_column_with_identity('a', 3)]),
    'numeric column fed strings': lambda: fc.transform_features(
        {'a': np.array(['1.0'])}, [fc.numeric_column('a')]),
}


@pytest.mark.parametrize('name', sorted(TF_VALUE_ERRORS))
def test_tf_value_errors_are_catchable_as_value_error(name):
  with pytest.raises(ValueError) as info:
    TF_VALUE_ERRORS[name]()
  assert isinstance(info.value, TypeError), 'a type check: still a TypeError too'
  assert len(str(info.value)) > 20


def _tf_class(case: str):
  return {'TypeError': TypeError, 'ValueError': ValueError}[REFUSALS[case]]


@pytest.mark.parametrize('case,call', [
    ('weighted_dtype_none', lambda: fc.weighted_categorical_column(ident(), 'w', dtype=None)),
    ('numeric_shape_float', lambda: fc.numeric_column('a', shape=[1.0])),
    ('numeric_int32_default_2_5', lambda: fc.numeric_column('a', dtype='int32',
                                                            default_value=2.5)),
    ('numeric_int32_default_2_0', lambda: fc.numeric_column('a', dtype='int32',
                                                            default_value=2.0)),
    ('sequence_numeric_shape_float', lambda: fc.sequence_numeric_column('a', shape=[1.0])),
    ('bucketized_rank2_source', lambda: fc.bucketized_column(fc.numeric_column('a', shape=[2, 2]),
                                                             [0., 1.])),
    ('shared_identity_and_hashed', lambda: fc.shared_embeddings(
        [ident(), fc.categorical_column_with_hash_bucket('b', 3)], 2)),
    ('vocabulary_list_float_values', lambda: fc.categorical_column_with_vocabulary_list(
        'a', [1.0, 2.0])),
    ('hash_bucket_float_dtype', lambda: fc.categorical_column_with_hash_bucket(
        'a', 10, dtype='float32')),
    ('weighted_string_dtype', lambda: fc.weighted_categorical_column(ident(), 'w', dtype=str)),
    ('embedding_initializer_not_callable', lambda: fc.embedding_column(ident(), 2,
                                                                       initializer='zeros')),
    ('numeric_string_dtype', lambda: fc.numeric_column('a', dtype=str)),
])
def test_refused_where_tf_refuses_with_tf_class(case, call):
  with pytest.raises(_tf_class(case)):
    call()


def test_shared_embeddings_same_type_with_wrappers_is_fine():
  a = fc.categorical_column_with_identity('a', 3)
  b = fc.weighted_categorical_column(fc.categorical_column_with_identity('b', 3), 'bw')
  assert len(fc.shared_embeddings([a, b], 2)) == 2


def test_hash_bucket_size_one_accepted_as_tf():
  assert REFUSALS['hash_bucket_size_1'] == 'accepted'
  dense_features_case('hash_one_bucket', [fc.indicator_column(
      fc.categorical_column_with_hash_bucket('s', 1))])


@pytest.mark.parametrize('kind', ['list', 'file'])
def test_negative_vocabulary_default_drops_values_as_tf(kind, tmp_path):
  assert REFUSALS[f'vocabulary_{kind}_default_minus_100'] == 'accepted'
  if kind == 'list':
    cat = fc.categorical_column_with_vocabulary_list('v', ['x', 'y'], default_value=-100)
  else:
    path = tmp_path / 'vocab.txt'
    path.write_text('x\ny\n')
    cat = fc.categorical_column_with_vocabulary_file('v', str(path), default_value=-100)
  dense_features_case('vocabulary_default_negative', [fc.indicator_column(cat)])
  assert fc.from_json(fc.to_json([cat]))[0] == cat


def test_vocabulary_default_at_or_past_the_vocabulary_is_refused():
  # TF accepts default_value=5 for a 2-entry vocabulary, then its embedding lookup fails on id 5;
  # jestimator refuses it when the column is made.
  with pytest.raises(ValueError, match=r'default_value must be negative .* \[0, 2\), got 5'):
    fc.categorical_column_with_vocabulary_list('v', ['x', 'y'], default_value=5)
