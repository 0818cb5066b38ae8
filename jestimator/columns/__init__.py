"""Feature columns without TensorFlow: the `tf.feature_column` catalog in two stages.

- Host stage (numpy, vectorised): `host_stage(columns)` / `transform_features(raw, columns)` turn raw
  features (strings allowed, ragged lists allowed) into a flat dict of numeric arrays.
- Device stage (Flax linen): `DenseFeatures`, `LinearModel`, `SequenceFeatures`, `input_layer`
  consume that dict inside a jitted model.
- `analyze(columns, data)` fills vocabularies, z-score statistics and quantile boundaries;
  `to_json` / `from_json` round-trip the resulting columns.

The host stage needs only numpy (input workers and preprocessing services need not import JAX);
the Flax layers are imported on first use.

See docs/feature_columns.md for a guide.
"""
from __future__ import annotations

import importlib
from typing import Any

from jestimator.columns.analyze import analyze
from jestimator.columns.base import (
    CategoricalColumn, ColumnTypeError, DenseColumn, FeatureColumn, SequenceColumn)
from jestimator.columns.categorical import (
    HashedCategoricalColumn, IdentityCategoricalColumn, VocabularyFileCategoricalColumn,
    VocabularyListCategoricalColumn, WeightedCategoricalColumn,
    categorical_column_with_hash_bucket, categorical_column_with_identity,
    categorical_column_with_vocabulary_file, categorical_column_with_vocabulary_list,
    weighted_categorical_column)
from jestimator.columns.crossed import CrossedColumn, crossed_column
from jestimator.columns.embedding import (
    EmbeddingColumn, IndicatorColumn, SharedEmbeddingColumn, embedding_column, indicator_column,
    shared_embeddings)
from jestimator.columns import keys
from jestimator.columns.hashing import fingerprint_ints, fingerprint_strings
from jestimator.columns.host import HostStage, host_stage, transform_features
from jestimator.columns.parse_spec import make_parse_example_spec
from jestimator.columns.numeric import (
    BucketizedColumn, NumericColumn, bucketized_column, numeric_column)
from jestimator.columns.sequence import (
    SequenceCategoricalColumn, SequenceNumericColumn, sequence_categorical_column_with_hash_bucket,
    sequence_categorical_column_with_identity, sequence_categorical_column_with_vocabulary_file,
    sequence_categorical_column_with_vocabulary_list, sequence_numeric_column)
from jestimator.columns.serialization import from_json, to_json

__all__ = [
    # column constructors (TF names and arguments)
    'numeric_column', 'bucketized_column', 'categorical_column_with_vocabulary_list',
    'categorical_column_with_vocabulary_file', 'categorical_column_with_identity',
    'categorical_column_with_hash_bucket', 'crossed_column', 'embedding_column',
    'shared_embeddings', 'indicator_column', 'weighted_categorical_column',
    'sequence_numeric_column', 'sequence_categorical_column_with_identity',
    'sequence_categorical_column_with_hash_bucket',
    'sequence_categorical_column_with_vocabulary_list',
    'sequence_categorical_column_with_vocabulary_file',
    # layers and functions
    'DenseFeatures', 'LinearModel', 'SequenceFeatures', 'input_layer', 'transform_features',
    'host_stage', 'HostStage', 'analyze', 'to_json', 'from_json', 'fingerprint_strings',
    'fingerprint_ints', 'keys', 'make_parse_example_spec', 'ColumnTypeError',
    # column classes
    'FeatureColumn', 'DenseColumn', 'CategoricalColumn', 'SequenceColumn', 'NumericColumn',
    'BucketizedColumn', 'VocabularyListCategoricalColumn', 'VocabularyFileCategoricalColumn',
    'IdentityCategoricalColumn', 'HashedCategoricalColumn', 'WeightedCategoricalColumn',
    'CrossedColumn', 'EmbeddingColumn', 'SharedEmbeddingColumn', 'IndicatorColumn',
    'SequenceNumericColumn', 'SequenceCategoricalColumn',
]

# Flax layers load lazily (PEP 562) so that the numpy-only host stage does not import JAX.
_LAZY = {'DenseFeatures': 'dense_features', 'input_layer': 'dense_features',
         'LinearModel': 'linear_model', 'SequenceFeatures': 'sequence_features'}


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    value = getattr(importlib.import_module(f'jestimator.columns.{_LAZY[name]}'), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
