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
      assert doc.pop('host_stage') == {'hashing': {'s': 'legacy', 'n_bucketized_X_s': 'legacy'},
                                       'vocabulary': {}}
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


def vocab_estimator(model_dir, column, warm_start_from=None):
  return je.LinearClassifier([column], model_dir=str(model_dir), config=je.RunConfig(seed=0),
                             warm_start_from=warm_start_from)


@pytest.mark.parametrize('changed, message', [
    (fc.categorical_column_with_vocabulary_list('c', ['w', 'v', 'u']), 'has a different vocabulary'),
    (fc.categorical_column_with_vocabulary_list('c', ['u', 'v', 'w'], num_oov_buckets=1),
     'has a different vocabulary'),
    (fc.categorical_column_with_hash_bucket('c', 3), 'is no longer a vocabulary column'),
])
def test_a_changed_vocabulary_is_refused_naming_the_column(tmp_path, changed, message):
  """Issue 24: trained with ['u','v','w'], restored with the order changed (or an OOV bucket, or
  hashed into 3 buckets) gave accuracy 0.31 / 0.38 instead of 1.0 without a word."""
  raw = {'c': np.array(['u', 'v', 'w'] * 20)}
  y = np.array([0, 1, 2] * 20)
  same = fc.categorical_column_with_vocabulary_list('c', ['u', 'v', 'w'])
  est = je.LinearClassifier([same], n_classes=3, model_dir=str(tmp_path / 'm'),
                            config=je.RunConfig(seed=0), optimizer='Adagrad')
  est.train(je.inputs.numpy_input_fn(raw, y, batch_size=60, num_epochs=None, shuffle=False),
            steps=200)
  eval_fn = je.inputs.numpy_input_fn(raw, y, batch_size=60, shuffle=False)
  assert est.evaluate(eval_fn)['accuracy'] == 1.0
  other = je.LinearClassifier([changed], n_classes=3, model_dir=str(tmp_path / 'm'),
                              optimizer='Adagrad')
  with pytest.raises(ValueError, match=f"column 'c' {message}.* than the one the checkpoint was "
                                       'trained with.*warm_start_from'):
    other.evaluate(eval_fn)
  with pytest.raises(ValueError, match=f"column 'c' {message}"):
    other.train(je.inputs.numpy_input_fn(raw, y, batch_size=60, shuffle=False), steps=1)
  # The opt-in: a new model_dir warm-started from this one takes the weights as they are.
  if changed.num_buckets == 3:
    warm = je.LinearClassifier([changed], n_classes=3, model_dir=str(tmp_path / 'warm'),
                               warm_start_from=str(tmp_path / 'm'))
    assert warm.evaluate(eval_fn)['global_step'] == 0
