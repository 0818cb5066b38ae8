"""TF 2.15 numbers for issue 17's fixes: the sigmoid cross-entropy gradient at a logit of 0, a
`numeric_column` weight column, and the v1 canned estimators' contract (summed loss, v1
optimizers and default learning rates).

Run: /work/tfvenv/bin/python tests/tf_parity/tf_scripts/gen_fixes.py
Writes tests/tf_parity/data/fixes.json (read by tests/tf_parity/test_fixes.py).
"""
import json
import os
import tempfile

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), '..', 'data', 'fixes.json')
fc = tf.feature_column
v1 = tf.compat.v1.estimator


def batches(features, labels):
  """An input_fn yielding each (features, labels) pair once, in order."""
  def input_fn():
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(1)
  return input_fn


def one_batch(features, labels, repeat=1):
  def input_fn():
    return tf.data.Dataset.from_tensors((features, labels)).repeat(repeat)
  return input_fn


def variables(est):
  return {n: est.get_variable_value(n).tolist() for n in est.get_variable_names()
          if 'Ftrl' not in n and 'Adagrad' not in n and n != 'global_step'}


def head_gradients():
  out = {}
  heads = {
      'binary': (tf.estimator.BinaryClassHead(), np.array([[0.], [0.]], np.float32),
                 np.array([[0], [1]], np.int64)),
      'logistic': (tf.estimator.LogisticRegressionHead(), np.array([[0.], [0.], [0.]], np.float32),
                   np.array([[0.], [1.], [0.25]], np.float32)),
      'multi_label': (tf.estimator.MultiLabelHead(3), np.zeros((2, 3), np.float32),
                      np.array([[1, 0, 1], [0, 1, 0]], np.int64)),
      'binary_sum': (tf.estimator.BinaryClassHead(loss_reduction=tf.losses.Reduction.SUM),
                     np.array([[0.], [0.], [2.]], np.float32), np.array([[0], [1], [1]], np.int64)),
  }
  for name, (head, logits, labels) in heads.items():
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = head.loss(labels=labels, logits=x, features={'x': np.zeros((len(logits), 1))})
    out[name] = {'logits': logits.tolist(), 'labels': labels.tolist(),
                 'loss': float(loss), 'grad': tape.gradient(loss, x).numpy().tolist()}
  return out


def sgd_first_steps():
  """v2 canned estimators with SGD(1) from zero weights, batch 1, labels 0 then 1."""
  out = {}
  feats = {'x': np.array([[2.], [-1.]], np.float32)}
  labels = np.array([[0], [1]], np.int64)
  for name, make in {
      'baseline': lambda d: tf.estimator.BaselineClassifier(
          model_dir=d, optimizer=lambda: tf.keras.optimizers.legacy.SGD(1.0)),
      'linear': lambda d: tf.estimator.LinearClassifier(
          [fc.numeric_column('x')], model_dir=d, optimizer=lambda: tf.keras.optimizers.legacy.SGD(1.0)),
  }.items():
    steps = []
    with tempfile.TemporaryDirectory() as d:
      est = make(d)
      for i in range(2):
        est.train(batches({k: v[i:i + 1] for k, v in feats.items()}, labels[i:i + 1]), steps=1)
        steps.append(variables(est))
    out[name] = {'features': {k: v.tolist() for k, v in feats.items()},
                 'labels': labels.tolist(), 'after_each_step': steps}
  return out


def weight_column():
  """Heads and a canned regressor with `weight_column=numeric_column(..., normalizer_fn=...)`."""
  out = {}
  w = fc.numeric_column('w', normalizer_fn=lambda x: x + 1.)
  feats = {'w': np.array([[-1.], [0.5], [2.]], np.float32)}
  logits = np.array([[45.], [41.], [44.]], np.float32)
  out['regression'] = {
      'features': {'w': feats['w'].tolist()}, 'logits': logits.tolist(),
      'labels': [[43.], [44.], [40.]],
      'loss': float(tf.estimator.RegressionHead(weight_column=w).loss(
          labels=np.array([[43.], [44.], [40.]], np.float32), logits=logits, features=feats))}
  out['binary'] = {
      'features': {'w': feats['w'].tolist()}, 'logits': [[1.], [-2.], [0.5]],
      'labels': [[1], [0], [0]],
      'loss': float(tf.estimator.BinaryClassHead(weight_column=w).loss(
          labels=np.array([[1], [0], [0]]), logits=np.array([[1.], [-2.], [0.5]], np.float32),
          features=feats))}
  w2 = fc.numeric_column('w2', shape=(2,), normalizer_fn=lambda x: x * 2.)
  feats2 = {'w2': np.array([[1., 0.5], [0., 3.]], np.float32)}
  out['regression_shape_2'] = {
      'features': {'w2': feats2['w2'].tolist()}, 'logits': [[1., 2.], [3., 4.]],
      'labels': [[0., 0.], [1., 1.]],
      'loss': float(tf.estimator.RegressionHead(label_dimension=2, weight_column=w2).loss(
          labels=np.array([[0., 0.], [1., 1.]], np.float32),
          logits=np.array([[1., 2.], [3., 4.]], np.float32), features=feats2))}
  # Through a canned estimator: zero weights (one SGD(0) step writes the checkpoint), evaluate.
  x = {'x': np.array([[1.], [2.], [3.]], np.float32), 'w': feats['w']}
  y = np.array([[2.], [-1.], [4.]], np.float32)
  with tempfile.TemporaryDirectory() as d:
    est = tf.estimator.LinearRegressor([fc.numeric_column('x')], model_dir=d, weight_column=w,
                                       optimizer=lambda: tf.keras.optimizers.legacy.SGD(0.0))
    est.train(one_batch(x, y), steps=1)
    res = est.evaluate(one_batch(x, y), steps=1)
  out['linear_regressor_eval'] = {'features': {k: v.tolist() for k, v in x.items()},
                                  'labels': y.tolist(),
                                  'metrics': {k: float(v) for k, v in res.items()}}
  return out


def v1_contract():
  """v1 canned estimators with their default optimizers, 3 steps on one batch of 4."""
  out = {}
  x = {'x': np.array([[1.], [2.], [-1.], [0.5]], np.float32),
       'c': np.array([['a'], ['b'], ['a'], ['c']])}
  y_cls = np.array([[1], [0], [1], [1]], np.int64)
  y_reg = np.array([[3.], [-1.], [2.], [0.5]], np.float32)
  cols = [fc.numeric_column('x'),
          fc.categorical_column_with_vocabulary_list('c', ['a', 'b', 'c'])]
  makers = {
      'BaselineClassifier': (lambda d: v1.BaselineClassifier(model_dir=d), y_cls),
      'BaselineRegressor': (lambda d: v1.BaselineRegressor(model_dir=d), y_reg),
      'LinearClassifier': (lambda d: v1.LinearClassifier(cols, model_dir=d), y_cls),
      'LinearRegressor': (lambda d: v1.LinearRegressor(cols, model_dir=d), y_reg),
      'LinearClassifier_none': (lambda d: v1.LinearClassifier(cols, model_dir=d, optimizer=None),
                                y_cls),
      'DNNLinearCombinedClassifier': (lambda d: v1.DNNLinearCombinedClassifier(
          model_dir=d, linear_feature_columns=cols), y_cls),
      'DNNLinearCombinedRegressor': (lambda d: v1.DNNLinearCombinedRegressor(
          model_dir=d, linear_feature_columns=cols), y_reg),
  }
  for name, (make, y) in makers.items():
    with tempfile.TemporaryDirectory() as d:
      est = make(d)
      est.train(one_batch(x, y, 3), steps=3)
      res = est.evaluate(one_batch(x, y), steps=1)
      out[name] = {'variables': variables(est), 'labels': y.tolist(),
                   'metrics': {k: float(v) for k, v in res.items()}}
  out['features'] = {'x': x['x'].tolist(), 'c': x['c'].tolist()}
  return out


def v1_optimizers():
  """tf.compat.v1.train optimizers at lr 0.1: three updates of w with fixed gradients."""
  grads = [[0.5, -1.0, 0.0], [0.25, 2.0, -0.5], [-1.0, 0.5, 1.5]]
  out = {'init': [1.0, -2.0, 0.5], 'grads': grads, 'learning_rate': 0.1, 'after': {}}
  names = {'Adagrad': tf.compat.v1.train.AdagradOptimizer,
           'Adam': tf.compat.v1.train.AdamOptimizer,
           'Ftrl': tf.compat.v1.train.FtrlOptimizer,
           'RMSProp': tf.compat.v1.train.RMSPropOptimizer,
           'SGD': tf.compat.v1.train.GradientDescentOptimizer}
  for name, cls in names.items():
    g = tf.Graph()
    with g.as_default():
      w = tf.compat.v1.get_variable('w', initializer=tf.constant(out['init']))
      ph = tf.compat.v1.placeholder(tf.float32, [3])
      op = cls(0.1).apply_gradients([(ph, w)])
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        steps = []
        for gr in grads:
          sess.run(op, {ph: gr})
          steps.append(sess.run(w).tolist())
    out['after'][name] = steps
  return out


def main():
  out = {'tf_version': tf.__version__, 'head_gradients': head_gradients(),
         'sgd_first_steps': sgd_first_steps(), 'weight_column': weight_column(),
         'v1_contract': v1_contract(), 'v1_optimizers': v1_optimizers()}
  with open(OUT, 'w') as f:
    json.dump(out, f, indent=1)
  print(json.dumps(out)[:3000])


if __name__ == '__main__':
  main()
