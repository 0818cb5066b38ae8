"""The hand-written side of the Adult workloads: numpy pre-processing, a Flax wide & deep model
and the canned estimators' optimizers written out.

Imports no jestimator, so a fresh process running the baseline (`cold_start`) pays only for what a
hand-written script would import; FTRL (optax has none) comes in as an argument.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

NUMERIC = ('age', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week')
VOCAB = ('gender', 'education', 'marital_status', 'relationship', 'workclass', 'race')
HASHED = {'occupation': 1000, 'native_country': 1000}
INDICATOR = ('workclass', 'education', 'gender', 'relationship')
EMBEDDED = ('native_country', 'occupation')
AGE_BOUNDARIES = (18, 25, 30, 35, 40, 45, 50, 55, 60, 65)
CROSS_BUCKETS = 1000
EMBEDDING_DIM = 8


def preprocess(train: dict[str, np.ndarray], test: dict[str, np.ndarray]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
  """Raw columns -> `{'numeric': [n, 5] float32, '<column>': [n] int32 ids}` and id-space sizes.

  Vocabularies come from the train split (unknown values get one extra id), hashed columns use
  the factorised value modulo the bucket count, crosses the factorised id pair / triple modulo
  `CROSS_BUCKETS`: the same id spaces as the feature columns, not the same hash function.
  """
  out_tr, out_te, sizes = {}, {}, {}
  num_tr = np.stack([train[k].astype(np.float32) for k in NUMERIC], 1)
  num_te = np.stack([test[k].astype(np.float32) for k in NUMERIC], 1)
  mean, std = num_tr.mean(0), num_tr.std(0)
  out_tr['numeric'], out_te['numeric'] = (num_tr - mean) / std, (num_te - mean) / std
  for k in VOCAB:
    vocab = np.unique(train[k].astype(str))
    for raw, out in ((train, out_tr), (test, out_te)):
      v = raw[k].astype(str)
      ids = np.searchsorted(vocab, v)
      ids = np.where((ids < len(vocab)) & (vocab[np.minimum(ids, len(vocab) - 1)] == v), ids,
                     len(vocab))
      out[k] = ids.astype(np.int32)
    sizes[k] = len(vocab) + 1
  n_tr = len(num_tr)
  for k, buckets in HASHED.items():
    _, codes = np.unique(np.concatenate([train[k].astype(str), test[k].astype(str)]),
                         return_inverse=True)
    out_tr[k], out_te[k] = (codes[:n_tr] % buckets).astype(np.int32), (
        codes[n_tr:] % buckets).astype(np.int32)
    sizes[k] = buckets
  for raw, out in ((train, out_tr), (test, out_te)):
    out['age_buckets'] = np.digitize(raw['age'], AGE_BOUNDARIES).astype(np.int32)
  sizes['age_buckets'] = len(AGE_BOUNDARIES) + 1
  for name, keys in (('education_x_occupation', ('education', 'occupation')),
                     ('age_x_education_x_occupation', ('age_buckets', 'education', 'occupation'))):
    both = np.concatenate([np.stack([out_tr[k] for k in keys], 1),
                           np.stack([out_te[k] for k in keys], 1)])
    _, codes = np.unique(both, axis=0, return_inverse=True)
    codes = codes.reshape(-1) % CROSS_BUCKETS
    out_tr[name], out_te[name] = codes[:n_tr].astype(np.int32), codes[n_tr:].astype(np.int32)
    sizes[name] = CROSS_BUCKETS
  return out_tr, out_te, sizes


WIDE_IDS = (*VOCAB, *HASHED, 'age_buckets', 'education_x_occupation',
            'age_x_education_x_occupation')


class WideDeep(nn.Module):
  """Hand-written wide & deep logit: `sum_c w_c[id_c] + b` plus an MLP over the dense inputs."""
  sizes: dict
  hidden_units: tuple
  wide: bool = True
  deep: bool = True

  @nn.compact
  def __call__(self, f):
    logit = 0.0
    if self.deep:
      parts = [f['numeric']]
      parts += [nn.one_hot(f[k], self.sizes[k]) for k in INDICATOR]
      parts += [nn.Embed(self.sizes[k], EMBEDDING_DIM, name=f'embed_{k}')(f[k]) for k in EMBEDDED]
      x = jnp.concatenate(parts, -1)
      for i, units in enumerate(self.hidden_units):
        x = nn.relu(nn.Dense(units, kernel_init=nn.initializers.glorot_uniform(),
                             name=f'dnn_{i}')(x))
      logit = nn.Dense(1, kernel_init=nn.initializers.glorot_uniform(), name='dnn_logits')(x)[:, 0]
    if self.wide:
      w = [nn.Embed(self.sizes[k], 1, embedding_init=nn.initializers.zeros,
                    name=f'wide_{k}')(f[k])[:, 0] for k in WIDE_IDS]
      logit = logit + sum(w) + self.param('wide_bias', nn.initializers.zeros, ())
    return logit


def optimizer(model: str, ftrl: Callable[[float], optax.GradientTransformation]
              ) -> optax.GradientTransformation:
  """The canned defaults, written out: FTRL (lr min(cap, 1/sqrt(11))) and Adagrad(0.05).

  `ftrl(learning_rate)`: TF's FTRL as an optax transformation (jestimator's port; optax has none).
  """
  adagrad = optax.adagrad(0.05, initial_accumulator_value=0.1, eps=1e-7)
  n_wide = len(WIDE_IDS)
  if model == 'linear':
    return ftrl(min(0.2, n_wide ** -0.5))
  if model == 'dnn':
    return adagrad
  return optax.multi_transform(
      {'wide': ftrl(min(0.005, n_wide ** -0.5)), 'deep': adagrad},
      lambda params: {k: 'wide' if k.startswith('wide_') else 'deep' for k in params})
