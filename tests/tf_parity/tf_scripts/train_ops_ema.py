"""TF 2.15's `tf.train.ExponentialMovingAverage` after a gradient-descent step, in graph mode as
`tf.estimator` ran it (`train_op = ema.apply(vars)` under a control dependency on the optimizer's
`minimize(global_step=...)`), for `jestimator.train_ops.ema`.

Run: /work/tfvenv/bin/python tests/tf_parity/tf_scripts/train_ops_ema.py
Writes tests/tf_parity/data/train_ops_ema.json: the data, the initial weights and, per case
(decay, num_updates), the weights and their moving averages after each of 6 steps.
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), '..', 'data', 'train_ops_ema.json')
rng = np.random.default_rng(0)
X = rng.normal(size=(8, 3)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=8)).astype(np.float32)
W0 = rng.normal(size=(3, 1)).astype(np.float32)
STEPS, LR = 6, 0.1


def run(decay: float, num_updates: bool) -> dict:
  g = tf.Graph()
  with g.as_default():
    gs = tf.compat.v1.train.get_or_create_global_step()
    w = tf.compat.v1.get_variable('w', initializer=W0)
    loss = tf.reduce_mean(tf.square(tf.matmul(X, w)[:, 0] - Y))
    opt = tf.compat.v1.train.GradientDescentOptimizer(LR)
    minimize = opt.minimize(loss, global_step=gs)
    ema = tf.compat.v1.train.ExponentialMovingAverage(decay, num_updates=gs if num_updates
                                                      else None)
    with tf.control_dependencies([minimize]):
      train_op = ema.apply([w])
    average = ema.average(w)
    weights, averages = [], []
    with tf.compat.v1.Session(graph=g) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for _ in range(STEPS):
        sess.run(train_op)
        weights.append(sess.run(w)[:, 0].tolist())
        averages.append(sess.run(average)[:, 0].tolist())
  return {'decay': decay, 'num_updates': num_updates, 'weights': weights, 'averages': averages}


def main():
  cases = [run(0.9, False), run(0.99, True)]
  with open(OUT, 'w') as f:
    json.dump({'tf_version': tf.__version__, 'x': X.tolist(), 'y': Y.tolist(),
               'w0': W0[:, 0].tolist(), 'lr': LR, 'cases': cases}, f, indent=1)


if __name__ == '__main__':
  main()
