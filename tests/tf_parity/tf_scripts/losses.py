"""Writes ../data/losses.json: TF 2.15's tf.compat.v1.losses values and gradients.

Run with a TF 2.15 venv (never a jestimator dependency):
  <tfvenv>/bin/python tests/tf_parity/tf_scripts/losses.py
Each case: the loss function, its inputs (the second positional input is the one differentiated:
predictions or logits), keyword arguments, TF's value and TF's gradient of the (summed) value with
respect to that input. Inputs include ties (|error| == 0, |error| == delta, hinge margin exactly 1,
logit exactly 0) where the gradient depends on the op's tie rule.
"""
import json
import os

import numpy as np
import tensorflow as tf

L = tf.compat.v1.losses
R = L.Reduction
REDUCTIONS = {'NONE': R.NONE, 'SUM': R.SUM, 'MEAN': R.MEAN,
              'SUM_OVER_BATCH_SIZE': R.SUM_OVER_BATCH_SIZE,
              'SUM_BY_NONZERO_WEIGHTS': R.SUM_BY_NONZERO_WEIGHTS}
rng = np.random.default_rng(0)

labels_r = [[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]]
preds_r = [[1.0, 3.0], [2.5, -1.0], [2.5, 0.25]]   # ties: errors of 0 and of exactly 1
w_row = [[1.0], [0.0], [2.0]]
w_full = [[1.0, 0.5], [0.0, 0.0], [2.0, 3.0]]
bin_labels = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
logits = [[0.0, 0.0], [-1.0, 1.0], [2.0, -0.5]]    # ties: logit 0; hinge margin exactly 1
probs = [[0.9, 0.2], [0.4, 0.6], [0.5, 0.99]]
onehot = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
logits3 = [[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 0.5, 3.0]]
unit_l = (np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])).tolist()
unit_p = (np.array([[0.8, 0.6], [0.0, 1.0], [0.0, -1.0]])).tolist()

cases = []


def add(fn, labels, x, weights=None, **kwargs):
  cases.append((fn, labels, x, weights, kwargs))


for red in REDUCTIONS:
  for w in (None, 2.0, w_row, w_full):
    add('mean_squared_error', labels_r, preds_r, w, reduction=red)
    add('absolute_difference', labels_r, preds_r, w, reduction=red)
    add('huber_loss', labels_r, preds_r, w, reduction=red)
    add('hinge_loss', bin_labels, logits, w, reduction=red)
    add('sigmoid_cross_entropy', bin_labels, logits, w, reduction=red)
    add('log_loss', bin_labels, probs, w, reduction=red)
  for w in (None, [1.0, 0.0, 2.0]):
    add('softmax_cross_entropy', onehot, logits3, w, reduction=red)
    add('sparse_softmax_cross_entropy', [1, 0, 2], logits3, w, reduction=red)
  add('cosine_distance', unit_l, unit_p, w_row, axis=1, reduction=red)
add('huber_loss', labels_r, preds_r, None, delta=0.5)
add('huber_loss', labels_r, preds_r, w_full, delta=2.0)
add('sigmoid_cross_entropy', bin_labels, logits, None, label_smoothing=0.2)
add('softmax_cross_entropy', onehot, logits3, None, label_smoothing=0.3)
add('sparse_softmax_cross_entropy', [[1], [0], [2]], logits3, [[1.0], [0.5], [2.0]])
add('log_loss', bin_labels, probs, None, epsilon=1e-3)
add('mean_squared_error', [1.0, 2.0, 3.0], [1.5, 2.0, 2.0], [1.0, 0.0, 2.0])
add('absolute_difference', [[1.0], [2.0]], [[1.0], [2.0]])   # all ties
add('mean_squared_error', labels_r, preds_r, [[0.0], [0.0], [0.0]])  # nothing present
add('mean_pairwise_squared_error', labels_r, preds_r, None)
add('mean_pairwise_squared_error', labels_r, preds_r, [[1.0], [0.0], [2.0]])
add('mean_pairwise_squared_error', rng.normal(size=(2, 3, 2)).round(3).tolist(),
    rng.normal(size=(2, 3, 2)).round(3).tolist(), [[[1.0]], [[3.0]]])

out = []
for fn, labels, x, weights, kwargs in cases:
  tf_kwargs = dict(kwargs)
  if 'reduction' in tf_kwargs:
    tf_kwargs['reduction'] = REDUCTIONS[tf_kwargs['reduction']]
  if weights is not None:
    tf_kwargs['weights'] = tf.constant(weights, tf.float32)
  xv = tf.Variable(np.array(x, np.float32))
  lab = tf.constant(labels, tf.int64 if fn == 'sparse_softmax_cross_entropy' else tf.float32)
  with tf.GradientTape() as tape:
    value = getattr(L, fn)(lab, xv, **tf_kwargs)
    total = tf.reduce_sum(value)
  grad = tape.gradient(total, xv)
  out.append({'fn': fn, 'labels': labels, 'x': x, 'weights': weights, 'kwargs': kwargs,
              'value': value.numpy().tolist(), 'grad': grad.numpy().tolist()})

# TF's shape checks: these raise ValueError.
errors = []
for fn, labels, x in (('mean_squared_error', [[1.0], [2.0]], [1.0, 2.0]),
                      ('absolute_difference', [1.0, 2.0], [[1.0], [2.0]]),
                      ('sigmoid_cross_entropy', [[1.0], [0.0]], [0.5, 0.5]),
                      ('hinge_loss', [[1.0], [0.0]], [0.5, 0.5]),
                      ('log_loss', [[1.0], [0.0]], [0.5, 0.5]),
                      ('huber_loss', [[1.0], [0.0]], [0.5, 0.5])):
  try:
    getattr(L, fn)(tf.constant(labels), tf.constant(x))
    raised = False
  except ValueError:
    raised = True
  errors.append({'fn': fn, 'labels': labels, 'x': x, 'raises_value_error': raised})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'losses.json')
with open(path, 'w') as f:
  json.dump({'tf_version': tf.__version__, 'cases': out, 'shape_errors': errors}, f, indent=0)
print(len(out), 'cases,', len(errors), 'shape checks ->', os.path.normpath(path))
