"""The host stage contract, and both stages together on census rows outside any Estimator."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jestimator.columns as fc
from jestimator.columns import keys
from jestimator.datasets import adult


def test_raw_signature_and_keys():
  occ = fc.categorical_column_with_hash_bucket('occ', 100)
  cols = [fc.numeric_column('age', dtype=np.int64), fc.numeric_column('v', shape=(2,)),
          fc.crossed_column(['edu', 'n'], 10), fc.categorical_column_with_identity('n', 4),
          fc.embedding_column(occ, 2),
          fc.weighted_categorical_column(fc.categorical_column_with_vocabulary_list(
              't', ['a']), 'tw'),
          fc.sequence_numeric_column('s'), fc.indicator_column(
              fc.sequence_categorical_column_with_identity('si', 3))]
  stage = fc.host_stage(cols)
  assert stage.raw_feature_keys == ('age', 'edu', 'n', 'occ', 's', 'si', 't', 'tw', 'v')
  sig = stage.raw_signature()
  assert sig['age'] == {'dtype': 'int64', 'shape': [1], 'multivalent': False}
  assert sig['v'] == {'dtype': 'float32', 'shape': [2], 'multivalent': False}
  assert sig['edu'] == {'dtype': 'string', 'shape': [], 'multivalent': False}  # crossed only
  assert sig['n'] == {'dtype': 'int64', 'shape': [], 'multivalent': False}  # identity wins
  assert sig['occ']['dtype'] == 'string' and sig['tw']['dtype'] == 'float32'
  assert sig['s'] == {'dtype': 'float32', 'shape': [1], 'multivalent': True}
  assert sig['si'] == {'dtype': 'int64', 'shape': [], 'multivalent': True}
  assert set(stage.output_keys) == {
      'age', 'v', keys.ids_key(cols[2]), keys.ids_key(cols[3]), keys.ids_key(occ),
      keys.ids_key(cols[5].categorical_column), keys.weights_key(cols[5]), 's', 's/length',
      keys.ids_key(cols[7].categorical_column.categorical_column),
      keys.length_key(cols[7].categorical_column)}
  # a column's keys depend on that column only: the same in any host stage
  assert keys.ids_key(occ) == keys.ids_key(fc.categorical_column_with_hash_bucket('occ', 100))
  assert keys.ids_key(occ) != keys.ids_key(fc.categorical_column_with_hash_bucket('occ', 101))
  assert keys.ids_key(occ).startswith('occ@') and keys.ids_key(occ).endswith('/ids')


def test_outputs_are_numeric_with_the_batch_dimension():
  cols = [fc.numeric_column('a'), fc.indicator_column(fc.categorical_column_with_vocabulary_list(
      'w', ['x', 'y'])), fc.crossed_column(['w', 'z'], 7)]
  raw = {'a': np.arange(5.0), 'w': np.array(['x', 'y', 'x', 'q', 'y']),
         'z': [['p'], ['p', 'q'], [], ['r'], ['s', 's', 's']], 'unused': np.array(['s'] * 5)}
  out = fc.transform_features(raw, cols)
  for k, v in out.items():
    assert v.dtype.kind in 'if' and v.shape[0] == 5, k
    assert v.flags.c_contiguous
  assert out[keys.ids_key(cols[2])].shape == (5, 4)  # 1 x pow2(3)


def test_width_is_a_power_of_two_so_batches_reuse_compiled_shapes():
  col = fc.categorical_column_with_hash_bucket('t', 10)
  widths = {fc.transform_features({'t': [['a'] * n, []]}, [col])[keys.ids_key(col)].shape[1]
            for n in range(1, 9)}
  assert widths == {1, 2, 4, 8}


def test_wide_and_deep_layers_train_on_transformed_census_rows():
  raw = {k: v[:512] for k, v in adult.load('train').items()}
  labels = (raw['income_bracket'] == '>50K').astype(np.float32)
  occupation = fc.categorical_column_with_hash_bucket('occupation', 100)
  education = fc.categorical_column_with_vocabulary_list('education', None)
  age = fc.numeric_column('age', normalizer='zscore')
  age_buckets = fc.bucketized_column(age, 'quantiles', num_buckets=5)
  wide = [education, occupation, age_buckets,
          fc.crossed_column(['education', 'occupation'], 1000)]
  deep = [age, fc.numeric_column('hours_per_week'), fc.embedding_column(occupation, 4),
          fc.indicator_column(education)]
  cols = fc.analyze(wide + deep, raw)
  wide, deep = cols[:4], cols[4:]
  x = fc.transform_features(raw, cols)
  lin, dense = fc.LinearModel(wide), fc.DenseFeatures(deep)
  params = {'lin': lin.init(jax.random.key(0), x), 'dense': dense.init(jax.random.key(1), x),
            'w': jnp.zeros((dense.apply(dense.init(jax.random.key(1), x), x).shape[1], 1))}

  def loss(p):
    logits = lin.apply(p['lin'], x) + dense.apply(p['dense'], x) @ p['w']
    return optax.sigmoid_binary_cross_entropy(logits[:, 0], labels).mean()

  opt = optax.adam(0.05)
  state = opt.init(params)

  @jax.jit
  def step(p, s):
    l, g = jax.value_and_grad(loss)(p)
    u, s = opt.update(g, s)
    return optax.apply_updates(p, u), s, l

  first = None
  for _ in range(30):
    params, state, l = step(params, state)
    first = float(l) if first is None else first
  assert float(l) < 0.8 * first  # both stages are differentiable and learn
