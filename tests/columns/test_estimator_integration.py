"""An Estimator with a custom model_fn over DenseFeatures trains on raw string features."""
import flax.linen as nn
import numpy as np
import optax

import jestimator as je
from jestimator import columns as fc


def test_custom_model_fn_trains_on_raw_strings_end_to_end(tmp_path):
  rng = np.random.default_rng(0)
  n = 256
  city = rng.choice(['paris', 'rome', 'oslo', 'lima'], size=n).astype(object)
  tags = [list(rng.choice(['a', 'b', 'c'], size=rng.integers(0, 3))) for _ in range(n)]
  age = rng.uniform(18, 80, size=n).astype(np.float32)
  y = ((city == 'rome') | (age > 60)).astype(np.float32)
  raw = {'city': city, 'age': age, 'tags': np.array(tags + [[]], dtype=object)[:n]}
  cols = [fc.embedding_column(fc.categorical_column_with_vocabulary_list('city', None), 4),
          fc.indicator_column(fc.categorical_column_with_hash_bucket('tags', 8)),
          fc.numeric_column('age', normalizer='zscore')]
  cols = fc.analyze(cols, raw)

  def model_fn(features, labels, mode):
    x = fc.DenseFeatures(cols)(features)
    logits = nn.Dense(1)(nn.relu(nn.Dense(16)(x)))[:, 0]
    if mode == je.ModeKeys.PREDICT:
      return je.EstimatorSpec(mode, predictions={'p': nn.sigmoid(logits)})
    loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    return je.EstimatorSpec(mode, loss=loss, optimizer=optax.adam(0.05), eval_metrics={
        'accuracy': je.metrics.accuracy(labels, (logits > 0).astype(np.float32))})

  est = je.Estimator(model_fn, str(tmp_path), feature_columns=cols,
                     config=je.RunConfig(seed=0, log_step_count_steps=1000))

  def batches():  # a plain generator of raw batches: the host stage runs per batch
    for start in range(0, n, 32):
      yield {k: v[start:start + 32] for k, v in raw.items()}, y[start:start + 32]

  for _ in range(8):
    est.train(batches)
  results = est.evaluate(je.inputs.numpy_input_fn(raw, y, batch_size=64, shuffle=False))
  assert results['accuracy'] > 0.9, results
  unseen = {'city': np.array(['tokyo'], dtype=object), 'age': np.array([70.0], np.float32),
            'tags': np.array([['zzz']], dtype=object)}
  pred = list(est.predict(lambda: iter([unseen])))
  assert len(pred) == 1 and 0.0 <= pred[0]['p'] <= 1.0


def test_sparse_features_pass_through_the_estimator(tmp_path):
  # A sparse value (TF's SparseTensor parts) reaches the columns' host stage whole: 3 examples
  # (the same count as its 3 parts) read as the equivalent lists, not as 3 rows of parts.
  from jestimator import io as jio
  col = fc.weighted_categorical_column(fc.categorical_column_with_hash_bucket('tags', 4), 'w')

  emb = fc.embedding_column(col, 2, combiner='sum')  # random table: nonzero outputs

  def model_fn(features, mode):
    return je.EstimatorSpec(mode, predictions={'x': fc.DenseFeatures([emb])(features)})

  est = je.Estimator(model_fn, str(tmp_path), feature_columns=[col])
  lists = {'tags': np.array([['a'], [], ['b', 'c']], dtype=object),
           'w': np.array([[2.0], [], [1.0, -1.0]], dtype=object)}
  sparse = {'tags': jio.to_sparse(lists['tags']), 'w': jio.to_sparse(lists['w'])}
  assert sparse['tags'].dense_shape.tolist() == [3, 2]
  got = [p['x'] for p in est.predict(lambda: iter([sparse]))]
  want = [p['x'] for p in est.predict(lambda: iter([lists]))]
  assert len(got) == 3 and np.abs(got).min(axis=1)[[0, 2]].all() and not np.any(got[1])
  np.testing.assert_allclose(got, want)
