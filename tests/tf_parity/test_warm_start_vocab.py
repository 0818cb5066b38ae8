"""WarmStartSettings(var_name_to_vocab_info=..., var_name_to_prev_var_name=...) against TF 2.15's
warm start with VocabInfo (data/warm_start_vocab.json, written by tf_scripts/warm_start_vocab.py):
the same old variable, vocabularies and arguments give the same warm-started variable."""
from __future__ import annotations

import json
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jestimator as je

_DATA = json.load(open(os.path.join(os.path.dirname(__file__), 'data', 'warm_start_vocab.json')))


class _Var(nn.Module):
  shape: tuple
  value: tuple | None = None

  @nn.compact
  def __call__(self):
    init = (lambda k, s: jnp.asarray(self.value, jnp.float32)) if self.value is not None else (
        nn.initializers.normal(1.0))
    return self.param('w', init, self.shape)


def _estimator(model_dir, shape, value=None, warm_start_from=None):
  def model_fn(features, labels, mode):
    w = _Var(tuple(shape), None if value is None else tuple(map(tuple, value)), name='var')()
    loss = jnp.mean(features['x']) * 0.0 + 0.0 * jnp.sum(w)
    return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.0))
  return je.Estimator(model_fn, model_dir, warm_start_from=warm_start_from)


def _one_step(est):
  est.train(je.inputs.numpy_input_fn({'x': np.zeros((2, 1), np.float32)}, np.zeros(2, np.float32),
                                     batch_size=2,
                                     shuffle=False), steps=1)


@pytest.mark.parametrize('case', _DATA['cases'], ids=lambda c: c['name'])
def test_vocab_remap_matches_tf(tmp_path, case):
  old = _estimator(str(tmp_path / 'old'), case['old_shape'], case['old_value'])
  _one_step(old)
  (tmp_path / 'old.txt').write_text(''.join(t + '\n' for t in _DATA['old_vocab']))
  info = je.VocabInfo(new_vocab=_DATA['new_vocab'], new_vocab_size=case['new_vocab_size'],
                      num_oov_buckets=case['num_oov_buckets'],
                      old_vocab=str(tmp_path / 'old.txt'), old_vocab_size=case['old_vocab_size'],
                      backup_initializer=nn.initializers.ones, axis=case['axis'])
  settings = je.WarmStartSettings(str(tmp_path / 'old'), vars_to_warm_start='.*var.*',
                                  var_name_to_vocab_info={'var/w': info})
  new = _estimator(str(tmp_path / 'new'), case['new_shape'], warm_start_from=settings)
  _one_step(new)
  np.testing.assert_array_equal(new.get_variable_value('params/var/w'), case['value'])


def test_prev_var_name_and_errors(tmp_path):
  case = _DATA['cases'][0]
  old = _estimator(str(tmp_path / 'old'), case['old_shape'], case['old_value'])
  _one_step(old)
  info = je.VocabInfo(_DATA['new_vocab'], 5, 1, _DATA['old_vocab'])  # backup: zeros, as TF
  # The model's variable `var/w` was `var/w` before; name it through var_name_to_prev_var_name.
  settings = je.WarmStartSettings(str(tmp_path / 'old'), '.*var.*',
                                  var_name_to_vocab_info={'params/var/w': info},
                                  var_name_to_prev_var_name={'var/w': 'params/var/w'})
  new = _estimator(str(tmp_path / 'new'), case['new_shape'], warm_start_from=settings)
  _one_step(new)
  want = np.where(np.asarray(case['value']) == 1.0, 0.0, case['value'])
  np.testing.assert_array_equal(new.get_variable_value('params/var/w'), want)
  bad = je.WarmStartSettings(str(tmp_path / 'old'), '.*var.*',
                             var_name_to_vocab_info={'nope/w': info})
  with pytest.raises(ValueError, match="names 'nope/w'"):
    _one_step(_estimator(str(tmp_path / 'bad'), case['new_shape'], warm_start_from=bad))
  wrong = je.VocabInfo(_DATA['new_vocab'], 5, 0, _DATA['old_vocab'])  # 5 + 0 != 6 rows
  bad = je.WarmStartSettings(str(tmp_path / 'old'), '.*var.*',
                             var_name_to_vocab_info={'var/w': wrong})
  with pytest.raises(ValueError, match='new_vocab_size \\+ num_oov_buckets'):
    _one_step(_estimator(str(tmp_path / 'bad2'), case['new_shape'], warm_start_from=bad))
