"""Bad input gets an error that names the column and the feature."""
from __future__ import annotations

import numpy as np
import pytest

import jestimator.columns as fc


def test_missing_feature_lists_the_keys_present():
  col = fc.embedding_column(fc.categorical_column_with_hash_bucket('occupation', 10), 2)
  with pytest.raises(ValueError, match=r"feature 'occupation' required by "
                                       r"categorical_column_with_hash_bucket 'occupation' is "
                                       r"missing from the batch; the batch has keys \['age', 'edu'\]"):
    fc.transform_features({'age': [1.0], 'edu': ['x']}, [col])


def test_string_fed_to_numeric_column():
  with pytest.raises(TypeError, match=r"numeric_column 'age': feature 'age' holds strings"):
    fc.transform_features({'age': np.array(['39', '50'])}, [fc.numeric_column('age')])
  with pytest.raises(TypeError, match=r"numeric_column 'age': feature 'age' holds strings"):
    fc.transform_features({'age': np.array([39, 'x'], dtype=object)}, [fc.numeric_column('age')])


def test_shape_mismatch():
  col = fc.numeric_column('v', shape=3)
  with pytest.raises(ValueError, match=r"numeric_column 'v': feature 'v' has shape \(2,\) per "
                                       r'example, expected \(3,\)'):
    fc.transform_features({'v': np.zeros((4, 2))}, [col])
  with pytest.raises(ValueError, match='lists of varying length'):
    fc.transform_features({'v': [[1, 2, 3], [1]]}, [col])


def test_identity_out_of_range_names_the_range():
  col = fc.categorical_column_with_identity('day', 7)
  with pytest.raises(ValueError, match=r"categorical_column_with_identity 'day': feature 'day' has "
                                       r'id 9 outside the range \[0, 7\)'):
    fc.transform_features({'day': [1, 9]}, [col])


def test_wrong_value_types_for_categorical_columns():
  hashed = fc.categorical_column_with_hash_bucket('occ', 10)
  with pytest.raises(TypeError, match=r"hash_bucket 'occ': feature 'occ' must hold strings.*int"):
    fc.transform_features({'occ': np.array(['a', 3], dtype=object)}, [hashed])
  ident = fc.categorical_column_with_identity('i', 5)
  with pytest.raises(TypeError, match=r"feature 'i' holds strings.*expects integers"):
    fc.transform_features({'i': ['1']}, [ident])
  with pytest.raises(TypeError, match="feature 'occ' mixes lists and scalars"):
    fc.transform_features({'occ': [['a'], 'b']}, [hashed])


def test_batch_sizes_must_agree():
  cols = [fc.numeric_column('a'), fc.numeric_column('b')]
  with pytest.raises(ValueError, match=r"feature 'b' has batch size 3 but feature 'a' has 2"):
    fc.transform_features({'a': [1.0, 2.0], 'b': [1.0, 2.0, 3.0]}, cols)


def test_columns_that_need_analyze():
  for col in (fc.numeric_column('x', normalizer='zscore'),
              fc.categorical_column_with_vocabulary_list('w', None),
              fc.bucketized_column(fc.numeric_column('x'), 'quantiles', num_buckets=3)):
    with pytest.raises(ValueError, match=r'run jestimator.columns.analyze\(columns, data\) first'):
      fc.host_stage([col])


def test_conflicting_columns_on_one_feature():
  with pytest.raises(ValueError, match="write host output 'x' differently"):
    fc.host_stage([fc.numeric_column('x'), fc.numeric_column('x', shape=2)])
  with pytest.raises(ValueError, match="feature 'x' is read as string by .* but as float32"):
    fc.host_stage([fc.numeric_column('x'), fc.categorical_column_with_hash_bucket('x', 5)])


def test_constructor_argument_errors():
  with pytest.raises(ValueError, match='combiner must be one of'):
    fc.embedding_column(fc.categorical_column_with_identity('i', 3), 2, combiner='max')
  with pytest.raises(TypeError, match='categorical_column must be a categorical column'):
    fc.embedding_column(fc.numeric_column('x'), 2)
  with pytest.raises(ValueError, match='duplicates'):
    fc.categorical_column_with_vocabulary_list('w', ['a', 'b', 'a'])
  with pytest.raises(TypeError, match='only strings or only ints'):
    fc.categorical_column_with_vocabulary_list('w', ['a', 1])
  with pytest.raises(ValueError, match=r'default_value must be an id in \[0, 3\)'):
    fc.categorical_column_with_identity('i', 3, default_value=3)
  with pytest.raises(ValueError, match='hash_bucket_size must be an integer >= 1'):
    fc.categorical_column_with_hash_bucket('h', 0)
  with pytest.raises(ValueError, match='key must be a non-empty string'):
    fc.numeric_column('')
  with pytest.raises(ValueError, match="vocabulary_list contains ''"):
    fc.categorical_column_with_vocabulary_list('w', ['a', ''])
