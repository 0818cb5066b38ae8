"""The canned wide & deep's combined optimizer is `train_ops.groups`: bit-identical to the
`optax.multi_transform` it replaced, on the Adult data, and the same checkpoint structure."""
from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import columns as fc
from jestimator.canned import dnn_linear_combined
from jestimator.datasets import adult
from jestimator.state.checkpoints import flatten_with_names


def _before_groups(linear_opt, dnn_opt):
  """`combined_optimizer` as it was: labels by the top-level `linear` / `dnn` keys."""
  transforms = {k: v for k, v in (('linear', linear_opt), ('dnn', dnn_opt)) if v is not None}

  def labels(params):
    return {k: jax.tree.map(lambda _: k, v) for k, v in params.items()}

  return optax.multi_transform(transforms, labels)


def _train(model_dir, rows):
  features, labels = rows
  education = fc.categorical_column_with_vocabulary_list(
      'education', sorted(set(features['education'].tolist())))
  occupation = fc.categorical_column_with_hash_bucket('occupation', hash_bucket_size=100)
  wide = [education, occupation, fc.crossed_column(['education', 'occupation'], 100)]
  deep = [fc.numeric_column('age'), fc.numeric_column('hours_per_week'),
          fc.embedding_column(occupation, dimension=4), fc.indicator_column(education)]
  est = je.DNNLinearCombinedClassifier(
      model_dir=model_dir, linear_feature_columns=wide, dnn_feature_columns=deep,
      dnn_hidden_units=[16, 8], label_vocabulary=list(adult.LABEL_VOCABULARY),
      config=je.RunConfig(seed=42))
  est.train(je.inputs.numpy_input_fn(features, labels, batch_size=128, num_epochs=1,
                                     shuffle=True, seed=1))
  return est


@pytest.mark.slow
def test_wide_and_deep_groups_are_bit_identical_to_multi_transform(tmp_path, monkeypatch):
  train = adult.load('train')
  labels = train.pop('income_bracket')
  keep = ('education', 'occupation', 'age', 'hours_per_week')
  rows = ({k: train[k][:2048] for k in keep}, labels[:2048])
  now = _train(str(tmp_path / 'groups'), rows)
  monkeypatch.setattr(dnn_linear_combined, 'combined_optimizer', _before_groups)
  before = _train(str(tmp_path / 'multi_transform'), rows)
  names = now.get_variable_names()
  assert names == before.get_variable_names() and now.get_variable_value('global_step') == 16
  for name in names:
    np.testing.assert_array_equal(now.get_variable_value(name), before.get_variable_value(name),
                                  err_msg=name)
  a = flatten_with_names(jax.device_get(now.state_store.newest.opt_state))
  b = flatten_with_names(jax.device_get(before.state_store.newest.opt_state))
  assert sorted(a) == sorted(b)  # the same checkpoint structure: old checkpoints restore
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
