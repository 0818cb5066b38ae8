"""Checkpoints remember how their columns hashed: restoring with another hash is an error, and a
checkpoint from before TF-compatible hashing only loads into legacy-hashing columns."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jestimator as je
from jestimator import columns as fc

RAW = {'s': np.array(['a', 'b', 'c', 'd']), 'n': np.array([[1.0], [2.0], [3.0], [4.0]])}
Y = np.array([0, 1, 1, 0])


def estimator(model_dir, hashing):
  cols = [fc.categorical_column_with_hash_bucket('s', 10, hashing=hashing),
          fc.crossed_column(['s', fc.bucketized_column(fc.numeric_column('n'), [2.5])], 20,
                            hashing=hashing), fc.numeric_column('n')]
  return je.LinearClassifier(cols, model_dir=str(model_dir), config=je.RunConfig(seed=0))


def train(est, steps=2):
  est.train(je.inputs.numpy_input_fn(RAW, Y, batch_size=4, num_epochs=None, shuffle=False),
            steps=steps)


def predict(est):
  return list(est.predict(je.inputs.numpy_input_fn(RAW, shuffle=False)))


def drop_record(model_dir):
  """Makes the checkpoints look like ones written before hashing records existed."""
  for step in os.listdir(model_dir):
    meta = os.path.join(model_dir, step, 'meta', 'metadata')
    if os.path.isfile(meta):
      with open(meta) as f:
        doc = json.load(f)
      assert doc.pop('host_stage') == {'hashing': {'s': 'legacy', 'n_bucketized_X_s': 'legacy'}}
      with open(meta, 'w') as f:
        json.dump(doc, f)


def test_an_old_checkpoint_loads_only_into_legacy_columns(tmp_path):
  train(estimator(tmp_path, 'legacy'))
  drop_record(str(tmp_path))
  with pytest.raises(ValueError, match=r"column 's' was trained with hashing='legacy' \(it was "
                                       r"written before jestimator hashed like TF\) but is now "
                                       r"hashing='tf'"):
    predict(estimator(tmp_path, 'tf'))
  with pytest.raises(ValueError, match="hashing='legacy' to use this checkpoint"):
    train(estimator(tmp_path, 'tf'))
  assert len(predict(estimator(tmp_path, 'legacy'))) == 4
  train(estimator(tmp_path, 'legacy'))  # and training continues with the same buckets


def test_restoring_with_another_hash_is_an_error(tmp_path):
  train(estimator(tmp_path, 'tf'))
  assert len(predict(estimator(tmp_path, 'tf'))) == 4
  with pytest.raises(ValueError, match="column 's' was trained with hashing='tf' but is now "
                                       "hashing='legacy'"):
    predict(estimator(tmp_path, 'legacy'))
