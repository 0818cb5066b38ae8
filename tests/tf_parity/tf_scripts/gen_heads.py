"""TF 2.15's outputs for the head cases of `tests/tf_parity/test_heads.py`.

Each case's inputs come from TF Estimator's head tests (`head/binary_class_head_test.py`,
`multi_class_head_test.py`, `regression_head_test.py`, `multi_label_head_test.py`; the `source`
field names the test) or widen them (`source: 'generated'`: seeded random logits, labels and
weights, so AUC and the threshold metrics see more than two points). For every case TF 2.15
computes, in eager mode as its tests' eager branch does: `head.loss`, every metric of
`head.update_metrics` (from `head.metrics()`), and the numeric predictions. Where the TF test
pinned a number (`pinned`), this script first checks that TF 2.15 still gives it.

Run: /work/tfvenv/bin/python tests/tf_parity/tf_scripts/gen_heads.py
Writes tests/tf_parity/data/heads.json.
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), '..', 'data', 'heads.json')
R = tf.losses.Reduction
B = ((45.,), (-41.,))
L11 = ((1,), (1,))


def _rng_case(kind, n, seed, **head):
  rng = np.random.default_rng(seed)
  dim = head.get('n_classes', 1) if kind in ('multi_class', 'multi_label') else head.get(
      'label_dimension', 1)
  logits = rng.normal(scale=2.0, size=(n, dim)).round(3)
  if kind == 'binary':
    labels = rng.integers(0, 2, size=(n, 1))
  elif kind == 'multi_class':
    labels = rng.integers(0, dim, size=(n, 1))
  elif kind == 'multi_label':
    labels = rng.integers(0, 2, size=(n, dim))
  elif kind == 'logistic':
    labels = rng.uniform(size=(n, 1)).round(3)
  elif kind == 'poisson':
    labels = rng.integers(0, 6, size=(n, dim)).astype(float)
  else:
    labels = rng.normal(scale=3.0, size=(n, dim)).round(3)
  features = {}
  if head.get('weight_column'):
    features[head['weight_column']] = rng.uniform(0.0, 3.0, size=(n, 1)).round(3).tolist()
  return {'kind': kind, 'head': head, 'logits': logits.tolist(), 'labels': labels.tolist(),
          'features': features, 'source': 'generated'}


def cases():
  c = {}
  # -- BinaryClassHead (binary_class_head_test.py) --
  c['binary/predict'] = dict(kind='binary', head={}, logits=[[0.3], [-0.4]], labels=None,
                             source='test_predict', pinned={'predictions': {
                                 'logistic': [[0.574443], [0.401312]],
                                 'probabilities': [[0.425557, 0.574443], [0.598688, 0.401312]],
                                 'class_ids': [[1], [0]], 'all_class_ids': [[0, 1], [0, 1]]}})
  c['binary/eval'] = dict(kind='binary', head={}, logits=B, labels=L11, source='test_eval',
                          pinned={'loss': 20.5, 'metrics': {
                              'average_loss': 20.5, 'accuracy': 0.5, 'precision': 1.,
                              'recall': 0.5, 'prediction/mean': 0.5, 'label/mean': 1.,
                              'accuracy_baseline': 1., 'auc': 0., 'auc_precision_recall': 1.}})
  c['binary/eval_named'] = dict(kind='binary', head={'name': 'some_binary_head'}, logits=B,
                                labels=L11, source='test_eval_metric_ops_with_head_name')
  c['binary/eval_regularization'] = dict(kind='binary', head={}, logits=B, labels=L11,
                                         regularization_losses=[1.5, 0.5],
                                         source='test_eval_with_regularization_losses',
                                         pinned={'loss': 22.5})
  c['binary/eval_vocabulary'] = dict(kind='binary', head={'label_vocabulary': ['aang', 'iroh']},
                                     logits=B, labels=[['iroh'], ['iroh']],
                                     source='test_eval_with_vocabulary_list', pinned={'loss': 20.5})
  c['binary/eval_thresholds'] = dict(kind='binary', head={'thresholds': [0.25, 0.5, 0.75]},
                                     logits=[[-1.], [1.]], labels=L11,
                                     source='test_eval_with_thresholds',
                                     pinned={'metrics': {'average_loss': 1.62652338 / 2.,
                                                         'accuracy/positive_threshold_0.25': 1.,
                                                         'recall/positive_threshold_0.5': .5,
                                                         'precision/positive_threshold_0.75': 0.}})
  c['binary/train_sum'] = dict(kind='binary', head={'loss_reduction': R.SUM}, logits=B,
                               labels=L11, source='test_train_create_loss_loss_reduction',
                               pinned={'loss': 41.})
  c['binary/weighted'] = dict(kind='binary', head={'weight_column': 'label_weights'},
                              logits=[[45.], [-41.], [44.]], labels=[[1], [1], [0]],
                              features={'label_weights': [[1.], [.1], [1.5]]},
                              source='test_weighted_multi_example_eval')
  c['binary/weighted_one_dim'] = dict(kind='binary', head={'weight_column': 'label_weights'},
                                      logits=[[45.], [-41.], [44.]], labels=[1, 1, 0],
                                      features={'label_weights': [1., .1, 1.5]},
                                      source='test_train_one_dim')
  c['binary/multi_dim_weighted'] = dict(
      kind='binary', head={'weight_column': 'weights'},
      logits=[[[10.], [-10.]], [[12.], [-12.]]], labels=[[[0], [0]], [[1], [1]]],
      features={'weights': [[1., 1.5], [2., 2.5]]}, source='test_multi_dim_weighted_eval')
  c['binary/large_logits_sum_over_batch'] = dict(kind='binary', head={},
                                                 logits=[[-10.], [10.]], labels=[[1], [0]],
                                                 source='test_eval_create_loss_loss_fn (inputs)')
  for i, n in enumerate((8, 40)):
    c[f'binary/generated_{n}'] = _rng_case('binary', n, 100 + i, thresholds=[0.3, 0.5, 0.8])
    c[f'binary/generated_{n}_weighted'] = _rng_case('binary', n, 200 + i,
                                                    weight_column='w')
  c['binary/generated_sum_weighted'] = _rng_case('binary', 16, 300, weight_column='w',
                                                 loss_reduction=R.SUM)
  # -- MultiClassHead (multi_class_head_test.py) --
  mc = ((10., 0., 0.), (0., 10., 0.))
  c['multi_class/predict'] = dict(kind='multi_class', head={'n_classes': 3},
                                  logits=[[1., 0., 0.], [0., 0., 1.]], labels=None,
                                  source='test_predict')
  c['multi_class/eval'] = dict(kind='multi_class', head={'n_classes': 3}, logits=mc,
                               labels=L11, source='test_eval',
                               pinned={'loss': 5., 'metrics': {'average_loss': 5.,
                                                               'accuracy': .5}})
  c['multi_class/eval_named'] = dict(kind='multi_class',
                                     head={'n_classes': 3, 'name': 'some_multiclass_head'},
                                     logits=mc, labels=L11,
                                     source='test_eval_metric_ops_with_head_name')
  c['multi_class/eval_regularization'] = dict(kind='multi_class', head={'n_classes': 3},
                                              logits=mc, labels=L11,
                                              regularization_losses=[1.5, 0.5],
                                              source='test_eval_with_regularization_losses',
                                              pinned={'loss': 7.})
  c['multi_class/eval_vocabulary'] = dict(
      kind='multi_class', head={'n_classes': 3, 'label_vocabulary': ['aang', 'iroh', 'zuko']},
      logits=mc, labels=[['iroh'], ['iroh']], source='test_eval_with_label_vocabulary')
  c['multi_class/weighted'] = dict(
      kind='multi_class', head={'n_classes': 3, 'weight_column': 'label_weights'},
      logits=[[10., 0., 0.], [0., 10., 0.], [0., 0., 10.]], labels=[[1], [2], [2]],
      features={'label_weights': [[1.], [2.], [3.]]}, source='test_weighted_multi_example_eval',
      pinned={'loss': 10., 'metrics': {'average_loss': 5., 'accuracy': .5}})
  c['multi_class/train_sum'] = dict(kind='multi_class',
                                    head={'n_classes': 3, 'loss_reduction': R.SUM}, logits=mc,
                                    labels=L11, source='test_train_create_loss_loss_reduction',
                                    pinned={'loss': 10.})
  c['multi_class/one_dim_weighted'] = dict(
      kind='multi_class', head={'n_classes': 3, 'weight_column': 'label_weights'},
      logits=[[10., 0., 0.], [0., 10., 0.], [0., 0., 10.]], labels=[1, 2, 2],
      features={'label_weights': [1., 2., 3.]}, source='test_train_one_dim')
  c['multi_class/multi_dim_weighted'] = dict(
      kind='multi_class', head={'n_classes': 3, 'weight_column': 'weights'},
      logits=[[[10., 0., 0.], [12., 0., 0.]], [[0., 10., 0.], [0., 15., 0.]]],
      labels=[[[0], [1]], [[1], [2]]], features={'weights': [[1., 1.5], [2., 2.5]]},
      source='test_multi_dim_weighted_eval')
  for i, n in enumerate((8, 40)):
    c[f'multi_class/generated_{n}'] = _rng_case('multi_class', n, 400 + i, n_classes=4)
    c[f'multi_class/generated_{n}_weighted'] = _rng_case('multi_class', n, 500 + i, n_classes=5,
                                                         weight_column='w')
  # -- RegressionHead, PoissonRegressionHead, LogisticRegressionHead (regression_head_test.py) --
  r = ((45.,), (41.,))
  rl = ((43.,), (44.,))
  c['regression/predict'] = dict(kind='regression', head={}, logits=r, labels=None,
                                 source='test_predict')
  c['regression/predict_inverse_link'] = dict(kind='regression', head={'inverse_link_fn': 'exp'},
                                              logits=[[1.], [-2.]], labels=None,
                                              source='test_predict_with_inverse_link_fn')
  c['regression/eval'] = dict(kind='regression', head={}, logits=r, labels=rl,
                              source='test_eval', pinned={'loss': 6.5, 'metrics': {
                                  'average_loss': 6.5, 'label/mean': 43.5,
                                  'prediction/mean': 43.}})
  c['regression/eval_named'] = dict(kind='regression', head={'name': 'some_regression_head'},
                                    logits=[[1.], [9.]], labels=[[1], [1]],
                                    source='test_eval_metric_ops_with_head_name_for_regression')
  c['regression/eval_regularization'] = dict(kind='regression', head={}, logits=r, labels=rl,
                                             regularization_losses=[2.],
                                             source='test_eval_with_regularization_losses',
                                             pinned={'loss': 8.5})
  c['regression/train_sum'] = dict(kind='regression', head={'loss_reduction': R.SUM}, logits=r,
                                   labels=rl, source='test_train_create_loss_loss_reduction',
                                   pinned={'loss': 13.})
  c['regression/weighted'] = dict(kind='regression', head={'weight_column': 'label_weights'},
                                  logits=[[45.], [41.], [44.]], labels=[[35.], [42.], [45.]],
                                  features={'label_weights': [[1.], [.1], [1.5]]},
                                  source='test_weighted_multi_example_eval',
                                  pinned={'loss': 101.6 / 3})
  c['regression/weight_numeric_column'] = dict(
      kind='regression', head={'weight_column': {'numeric_column': 'label_weights',
                                                 'normalizer_fn': 'plus_one'}},
      logits=[[45.], [41.], [44.]], labels=[[35.], [42.], [45.]],
      features={'label_weights': [[0.], [-0.9], [0.5]]}, source='test_weight_with_numeric_column',
      pinned={'loss': 33.8666667})
  c['regression/one_dim_weighted'] = dict(
      kind='regression', head={'weight_column': 'label_weights'}, logits=[[45.], [41.], [44.]],
      labels=[35., 42., 45.], features={'label_weights': [1., .1, 1.5]},
      source='test_train_one_dim')
  c['regression/multi_value_weighted'] = dict(
      kind='regression', head={'label_dimension': 3, 'weight_column': 'label_weights'},
      logits=[[45., 41., 44.]], labels=[[35., 42., 45.]],
      features={'label_weights': [[1., .1, 1.5]]}, source='test_weighted_multi_value_eval')
  c['regression/multi_dim_weighted'] = dict(
      kind='regression', head={'weight_column': 'label_weights'},
      logits=[[[45.], [41.]], [[44.], [42.]]], labels=[[[35.], [42.]], [[45.], [40.]]],
      features={'label_weights': [[1., 1.5], [2., 2.5]]},
      source='test_multi_dim_weighted_eval (inputs widened)')
  for i, n in enumerate((8, 40)):
    c[f'regression/generated_{n}'] = _rng_case('regression', n, 600 + i, label_dimension=2)
    c[f'regression/generated_{n}_weighted'] = _rng_case('regression', n, 700 + i,
                                                        weight_column='w')
    c[f'poisson/generated_{n}'] = _rng_case('poisson', n, 800 + i)
    c[f'logistic/generated_{n}'] = _rng_case('logistic', n, 900 + i, weight_column='w')
  c['poisson/no_full_loss'] = dict(_rng_case('poisson', 6, 850),
                                   head={'compute_full_loss': False})
  # -- MultiLabelHead (multi_label_head_test.py) --
  ml = ((-1., 1.), (-1.5, 1.5))
  mll = ((1, 0), (1, 1))
  c['multi_label/predict'] = dict(kind='multi_label', head={'n_classes': 4},
                                  logits=[[0., 1., 2., -1.], [-1., -2., -3., 1.]], labels=None,
                                  source='test_predict')
  c['multi_label/eval'] = dict(kind='multi_label', head={'n_classes': 2}, logits=ml, labels=mll,
                               source='test_eval',
                               pinned={'metrics': {'auc': 0.3333, 'auc_precision_recall': 0.7689}})
  c['multi_label/eval_regularization'] = dict(kind='multi_label', head={'n_classes': 2},
                                              logits=ml, labels=mll,
                                              regularization_losses=[1.5, 0.5],
                                              source='test_eval_with_regularization_losses')
  c['multi_label/eval_thresholds'] = dict(
      kind='multi_label', head={'n_classes': 2, 'thresholds': [0.25, 0.5, 0.75]}, logits=ml,
      labels=mll, source='test_eval_with_thresholds',
      pinned={'metrics': {'accuracy/positive_threshold_0.25': .5,
                          'precision/positive_threshold_0.25': 2. / 3.,
                          'recall/positive_threshold_0.5': 1. / 3.,
                          'precision/positive_threshold_0.75': 1.}})
  c['multi_label/eval_class_metrics'] = dict(
      kind='multi_label', head={'n_classes': 2, 'classes_for_class_based_metrics': [0, 1]},
      logits=ml, labels=mll, source='test_eval_with_classes_for_class_based_metrics',
      pinned={'metrics': {'auc/class0': 0., 'auc_precision_recall/class0': 1.,
                          'auc/class1': 1.}})
  c['multi_label/eval_weighted'] = dict(
      kind='multi_label', head={'n_classes': 2, 'weight_column': 'example_weights'},
      logits=[[-10., 10.], [-15., 10.]], labels=mll,
      features={'example_weights': [[1.], [2.]]}, source='test_eval_with_weights')
  c['multi_label/train_sum'] = dict(kind='multi_label',
                                    head={'n_classes': 2, 'loss_reduction': R.SUM},
                                    logits=[[-10., 10.], [-15., 10.]], labels=mll,
                                    source='test_train_create_loss_loss_reduction')
  c['multi_label/large_logits'] = dict(kind='multi_label', head={'n_classes': 2},
                                       logits=[[-10., 10.], [-15., 10.]], labels=mll,
                                       source='test_eval_create_loss_large_logits')
  for i, n in enumerate((8, 40)):
    c[f'multi_label/generated_{n}'] = _rng_case('multi_label', n, 1000 + i, n_classes=3,
                                                thresholds=[0.3, 0.5])
    c[f'multi_label/generated_{n}_weighted'] = _rng_case('multi_label', n, 1100 + i,
                                                         n_classes=4, weight_column='w')
  for case in c.values():
    case.setdefault('features', {})
    case.setdefault('regularization_losses', None)
    case['logits'] = np.asarray(case['logits'], float).tolist()
  return c


def make_head(case):
  kw = dict(case['head'])
  wc = kw.get('weight_column')
  if isinstance(wc, dict):
    kw['weight_column'] = tf.feature_column.numeric_column(
        wc['numeric_column'], normalizer_fn=lambda x: x + 1.)
  if kw.get('inverse_link_fn') == 'exp':
    kw['inverse_link_fn'] = tf.math.exp
  return {'binary': tf.estimator.BinaryClassHead, 'multi_class': tf.estimator.MultiClassHead,
          'regression': tf.estimator.RegressionHead,
          'poisson': tf.estimator.PoissonRegressionHead,
          'logistic': tf.estimator.LogisticRegressionHead,
          'multi_label': tf.estimator.MultiLabelHead}[case['kind']](**kw)


def run(case):
  head = make_head(case)
  logits = np.asarray(case['logits'], np.float32)
  features = {k: np.asarray(v, np.float32) for k, v in case['features'].items()}
  features.setdefault('x', np.zeros((logits.shape[0], 1), np.float32))
  out = {}
  preds = head.predictions(logits)
  out['predictions'] = {k: np.asarray(v).tolist() for k, v in preds.items()
                        if np.asarray(v).dtype.kind in 'biuf'}
  if case['labels'] is not None:
    labels = np.asarray(case['labels'])
    if labels.dtype.kind == 'U':
      labels = labels.astype(bytes)
    regs = case['regularization_losses']
    out['loss'] = float(head.loss(labels, logits, features=features,
                                  regularization_losses=regs))
    metrics = head.update_metrics(head.metrics(regularization_losses=regs), features, logits,
                                  labels, regularization_losses=regs)
    out['metrics'] = {k: float(m.result()) for k, m in metrics.items()}
  return out


def check_pinned(name, case, out):
  pinned = case.get('pinned', {})
  tol = 1e-4  # TF's tests pin 4-6 digits (some at 1e-2)
  if 'loss' in pinned:
    np.testing.assert_allclose(out['loss'], pinned['loss'], rtol=tol, atol=tol, err_msg=name)
  for k, v in pinned.get('metrics', {}).items():
    np.testing.assert_allclose(out['metrics'][k], v, rtol=tol, atol=tol, err_msg=f'{name} {k}')
  for k, v in pinned.get('predictions', {}).items():
    np.testing.assert_allclose(out['predictions'][k], v, rtol=tol, atol=tol,
                               err_msg=f'{name} {k}')


def main():
  result = {'tf_version': tf.__version__, 'cases': {}}
  for name, case in cases().items():
    out = run(case)
    check_pinned(name, case, out)
    result['cases'][name] = dict(case, expected=out)
    print(name, out.get('loss'), flush=True)
  with open(OUT, 'w') as f:
    json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
