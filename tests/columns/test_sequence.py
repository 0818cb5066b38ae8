"""Sequence columns and SequenceFeatures."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jestimator.columns as fc
from jestimator.columns import keys

KEY = jax.random.key(0)


def test_sequence_numeric_host_padding_and_lengths():
  col = fc.sequence_numeric_column('temp', default_value=-9.0)
  x = fc.transform_features({'temp': [[1.0, 2.0, 3.0], [], [4.0]]}, [col])
  assert x['temp'].shape == (3, 4, 1)  # longest 3 -> 4 steps
  np.testing.assert_array_equal(x['temp'][..., 0], [[1, 2, 3, -9], [-9] * 4, [4, -9, -9, -9]])
  np.testing.assert_array_equal(x[keys.length_key(col)], [3, 0, 1])
  vec = fc.sequence_numeric_column('v', shape=2)
  x = fc.transform_features({'v': [[[1, 2], [3, 4]], [[5, 6]]]}, [vec])
  assert x['v'].shape == (2, 2, 2) and x['v/length'].tolist() == [2, 1]


def test_sequence_features_concatenates_by_name_and_returns_lengths():
  tokens = fc.sequence_categorical_column_with_vocabulary_list('tokens', ['a', 'b', 'c'])
  ids = fc.sequence_categorical_column_with_identity('ids', 3)
  cols = [fc.sequence_numeric_column('temp'), fc.embedding_column(tokens, 2),
          fc.indicator_column(ids)]
  raw = {'temp': [[1.0, 2.0], [3.0]], 'tokens': [['b', 'zz'], ['c']], 'ids': [[2, 0], [1]]}
  x = fc.transform_features(raw, cols)
  model = fc.SequenceFeatures(cols)
  params = model.init(KEY, x)
  table = jnp.arange(6, dtype=jnp.float32).reshape(3, 2)
  params = {'params': {'tokens_embedding': {'embedding_weights': table}}}
  seq, length = model.apply(params, x)
  # name order: ids_indicator (3) | temp (1) | tokens_embedding (2)
  assert seq.shape == (2, 2, 6)
  np.testing.assert_array_equal(seq[0], [[0, 0, 1, 1.0, 2, 3], [1, 0, 0, 2.0, 0, 0]])
  np.testing.assert_array_equal(seq[1], [[0, 1, 0, 3.0, 4, 5], [0, 0, 0, 0.0, 0, 0]])
  np.testing.assert_array_equal(length, [2, 1])  # the OOV 'zz' still counts as a step


def test_sequence_features_rejects_non_sequence_columns():
  with pytest.raises(TypeError, match='not a sequence column'):
    fc.SequenceFeatures([fc.numeric_column('a')]).init(KEY, {'a': np.ones((1, 1))})
  seq = fc.sequence_categorical_column_with_hash_bucket('t', 10)
  with pytest.raises(TypeError, match=r'wrap it: embedding_column\(<t>'):
    fc.SequenceFeatures([seq]).init(KEY, fc.transform_features({'t': [['a']]}, [seq]))


def test_sequence_file_and_hash_constructors(tmp_path):
  path = tmp_path / 'v.txt'
  path.write_text('x\ny\n')
  f = fc.sequence_categorical_column_with_vocabulary_file('t', str(path))
  h = fc.sequence_categorical_column_with_hash_bucket('t', 10)
  assert f.num_buckets == 2 and h.num_buckets == 10 and f.name == 't'
  x = fc.transform_features({'t': [['y', 'x', 'y'], []]}, [fc.indicator_column(f)])
  np.testing.assert_array_equal(x[keys.ids_key(f.categorical_column)], [[1, 0, 1, -1], [-1] * 4])
  np.testing.assert_array_equal(x[keys.length_key(f)], [3, 0])
