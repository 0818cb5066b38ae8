"""Tests of `jestimator.canned.heads`: losses, predictions, metrics, specs vs TF v2 and numpy."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jestimator import export_output
from jestimator import metrics as metrics_lib
from jestimator import padding
from jestimator.canned import heads as heads_lib
from jestimator.canned.heads import (BinaryClassHead, LogisticRegressionHead, LossReduction,
                                     MultiClassHead, MultiHead, MultiLabelHead,
                                     PoissonRegressionHead, RegressionHead)
from jestimator.mode_keys import ModeKeys

LN2 = math.log(2.0)
BINARY_METRICS = {'accuracy', 'accuracy_baseline', 'auc', 'auc_precision_recall', 'average_loss',
                  'label/mean', 'precision', 'prediction/mean', 'recall'}


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_sigmoid_ce(labels, logits):
  p = _sigmoid(logits)
  return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


@jax.jit
def _jit_results(states):
  return {k: m.result() for k, m in states.items()}


def _results(states):
  """Host floats of metric states (one compiled program, much faster than op-by-op)."""
  return {k: float(v) for k, v in jax.device_get(_jit_results(states)).items()}


def _loss(head, labels, logits, features=None, regularization_losses=None):
  """`head.loss(...)` in one compiled program (fewer compilations than op-by-op)."""
  return jax.jit(lambda l, g, f, r: head.loss(l, g, f, regularization_losses=r))(
      labels, logits, features, regularization_losses)


def _eval(head, features, logits, labels, mask=None):
  """(loss, metric results) of the head's EVAL spec, computed in one compiled program."""

  def run(features, logits, labels, mask):
    with padding.mask_scope(mask):
      spec = head.create_estimator_spec(features, ModeKeys.EVAL, logits, labels)
    return spec.loss, {k: m.result() for k, m in spec.eval_metrics.items()}

  loss, res = jax.device_get(jax.jit(run)(features, logits, labels, mask))
  return float(loss), {k: float(v) for k, v in res.items()}


# ---------------------------------------------------------------------------------------------
# Losses and reductions.

@pytest.mark.parametrize('reduction, expected', [
    (LossReduction.SUM_OVER_BATCH_SIZE, 4 * LN2 / 2),  # TF: divides by the element count
    (LossReduction.AUTO, 4 * LN2 / 2),
    (LossReduction.SUM, 4 * LN2),
    (LossReduction.MEAN, LN2),  # sum(w l) / sum(w) = 4 ln2 / 4
])
def test_binary_loss_tf_weighted_example(reduction, expected):
  head = BinaryClassHead(weight_column='w', loss_reduction=reduction)
  loss = _loss(head, np.array([1, 0]), np.zeros((2, 1), np.float32),
                   features={'w': np.array([1.0, 3.0])})
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_binary_loss_tf_docstring_example_and_flat_shapes():
  head = BinaryClassHead()
  # TF's docstring: cross entropies (0, 41) / 2 = 20.5.
  logits = np.array([[45.], [-41.]], np.float32)
  assert float(_loss(head, np.array([[1], [1]]), logits)) == pytest.approx(20.5)
  # [batch] logits and [batch] labels are accepted too.
  assert float(_loss(head, np.array([1, 1]), logits[:, 0])) == pytest.approx(20.5)


def test_multi_class_loss_matches_numpy():
  logits = np.array([[10., 0., 0.], [0., 10., 0.], [1., 2., 3.]], np.float32)
  labels = np.array([2, 1, 0])
  lse = np.log(np.exp(logits).sum(axis=1))
  per_example = lse - logits[np.arange(3), labels]
  w = np.array([1., 2., 0.5])
  head = MultiClassHead(3, weight_column='w')
  feats = {'w': w}
  assert float(_loss(head, labels, logits, feats)) == pytest.approx(
      (w * per_example).sum() / 3, rel=1e-5)
  mean_head = MultiClassHead(3, weight_column='w', loss_reduction=LossReduction.MEAN)
  assert float(_loss(mean_head, labels[:, None], logits, feats)) == pytest.approx(
      (w * per_example).sum() / w.sum(), rel=1e-5)


def test_regression_label_dimension_two_divides_by_batch_times_dim():
  labels = np.array([[1., 2.], [3., 4.]])
  logits = np.zeros((2, 2), np.float32)
  assert float(_loss(RegressionHead(label_dimension=2), labels, logits)) == pytest.approx(7.5)
  sum_head = RegressionHead(label_dimension=2, loss_reduction=LossReduction.SUM)
  assert float(_loss(sum_head, labels, logits)) == pytest.approx(30.0)
  # Per-logit weights [batch, dim] are allowed for regression.
  head = RegressionHead(label_dimension=2, weight_column='w', loss_reduction=LossReduction.MEAN)
  w = np.array([[1., 0.], [0., 2.]])
  assert float(_loss(head, labels, logits, {'w': w})) == pytest.approx((1 + 32) / 3)
  # TF's docstring example: (4 + 9) / 2.
  tf_example = _loss(RegressionHead(), np.array([[43.], [44.]]), np.array([[45.], [41.]]))
  assert float(tf_example) == pytest.approx(6.5)


def test_poisson_loss_matches_hand_computation():
  labels = np.array([0., 1., 3.])
  logits = np.array([[0.], [1.], [2.]], np.float32)
  stirling3 = 3 * math.log(3) - 3 + 0.5 * math.log(2 * math.pi * 3)
  per = [1.0, math.e - 1, math.exp(2) - 6 + stirling3]
  assert float(_loss(PoissonRegressionHead(), labels, logits)) == pytest.approx(
      sum(per) / 3, rel=1e-6)
  per_short = [1.0, math.e - 1, math.exp(2) - 6]
  assert float(_loss(PoissonRegressionHead(compute_full_loss=False), labels, logits)) == (
      pytest.approx(sum(per_short) / 3, rel=1e-6))


def test_logistic_regression_and_multi_label_losses():
  labels = np.array([0.25, 1.0])
  logits = np.array([[0.5], [-2.0]], np.float32)
  expected = _np_sigmoid_ce(labels, logits[:, 0]).mean()
  assert float(_loss(LogisticRegressionHead(), labels, logits)) == pytest.approx(expected,
                                                                               rel=1e-5)
  # Multi-label: the per-example loss is averaged over classes, then SUM_OVER_BATCH_SIZE over
  # examples only.
  ml_labels = np.array([[1, 0, 1], [0, 0, 1]])
  ml_logits = np.array([[-1., 1., 2.], [0.5, -1.5, 3.]], np.float32)
  per = _np_sigmoid_ce(ml_labels, ml_logits).mean(axis=1)
  assert float(_loss(MultiLabelHead(3), ml_labels, ml_logits)) == pytest.approx(
      per.mean(), rel=1e-5)
  sum_head = MultiLabelHead(3, loss_reduction=LossReduction.SUM)
  assert float(_loss(sum_head, ml_labels, ml_logits)) == pytest.approx(per.sum(), rel=1e-5)


@pytest.mark.parametrize('reduction', [LossReduction.SUM_OVER_BATCH_SIZE, LossReduction.SUM,
                                       LossReduction.MEAN])
def test_padded_batch_gives_the_loss_of_its_real_rows(reduction):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 2)).astype(np.float32)
  labels = rng.normal(size=(6, 2)).astype(np.float32)
  w = rng.uniform(0.5, 2.0, size=6).astype(np.float32)
  mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
  head = RegressionHead(label_dimension=2, weight_column='w', loss_reduction=reduction)
  with padding.mask_scope(jnp.asarray(mask)) as scope:
    padded = _loss(head, labels, logits, {'w': w})
  assert scope.used  # the head declares itself padding-aware
  real = _loss(head, labels[:4], logits[:4], {'w': w[:4]})
  assert float(padded) == pytest.approx(float(real), rel=1e-6)


def test_loss_fn_and_regularization_losses():
  seen = {}

  def loss_fn(labels, logits, features):
    seen['features'] = features
    return jnp.abs(labels - logits)  # [batch, 1]

  head = BinaryClassHead(loss_fn=loss_fn)
  loss = head.loss(np.array([1., 0.]), np.array([[0.5], [0.25]]), features={'x': 1},
                   regularization_losses=[0.5, 0.25])
  assert float(loss) == pytest.approx((0.5 + 0.25) / 2 + 0.75)
  assert seen['features'] == {'x': 1}
  with pytest.raises(ValueError, match='unexpected argument'):
    BinaryClassHead(loss_fn=lambda labels, logits, extra: labels)
  with pytest.raises(ValueError, match='logits'):
    BinaryClassHead(loss_fn=lambda labels: labels)
  bad = BinaryClassHead(loss_fn=lambda labels, logits: jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match='loss_fn must return'):
    bad.loss(np.array([1., 0.]), np.zeros((2, 1)))


def test_loss_reduction_none_and_bad_values_rejected():
  with pytest.raises(ValueError, match='Invalid loss_reduction'):
    BinaryClassHead(loss_reduction=LossReduction.NONE)
  with pytest.raises(ValueError, match='Invalid loss_reduction'):
    RegressionHead(loss_reduction='average')


def test_weight_column_errors():
  head = BinaryClassHead(weight_column='weights')
  with pytest.raises(ValueError, match="weight_column 'weights' is missing"):
    head.loss(np.array([1, 0]), np.zeros((2, 1)), features={'x': np.zeros(2)})
  with pytest.raises(ValueError, match="weight_column 'weights' must have shape"):
    head.loss(np.array([1, 0]), np.zeros((2, 1)), features={'weights': np.zeros((2, 3))})


def test_shape_errors():
  with pytest.raises(ValueError, match=r'logits must have shape \[batch, 3\]'):
    MultiClassHead(3).loss(np.array([0, 1]), np.zeros((2, 2)))
  with pytest.raises(ValueError, match='labels must have shape'):
    RegressionHead(label_dimension=2).loss(np.zeros((2, 3)), np.zeros((2, 2)))


# ---------------------------------------------------------------------------------------------
# Predictions.

def test_binary_predictions_keys_and_values():
  logits = np.array([[1.5], [-0.5], [0.0]], np.float32)
  preds = BinaryClassHead().predictions(logits)
  assert set(preds) == {'logits', 'logistic', 'probabilities', 'class_ids', 'all_class_ids'}
  p = _sigmoid(logits)
  np.testing.assert_allclose(preds['logistic'], p, rtol=1e-6)
  np.testing.assert_allclose(preds['probabilities'], np.hstack([1 - p, p]), rtol=1e-6)
  np.testing.assert_array_equal(preds['class_ids'], [[1], [0], [0]])  # tie at 0 → class 0
  np.testing.assert_array_equal(preds['all_class_ids'], [[0, 1]] * 3)
  assert jnp.issubdtype(preds['class_ids'].dtype, jnp.integer)
  assert set(BinaryClassHead().predictions(logits, keys=['logistic'])) == {'logistic'}
  with pytest.raises(ValueError, match='class_ids'):
    BinaryClassHead().predictions(logits, keys=['classes'])


def test_multi_class_and_regression_predictions():
  logits = np.array([[1., 3., 2.], [0., -1., 0.5]], np.float32)
  preds = MultiClassHead(3).predictions(logits)
  assert set(preds) == {'logits', 'probabilities', 'class_ids', 'all_class_ids'}
  e = np.exp(logits)
  np.testing.assert_allclose(preds['probabilities'], e / e.sum(1, keepdims=True), rtol=1e-6)
  np.testing.assert_array_equal(preds['class_ids'], [[1], [2]])
  np.testing.assert_array_equal(preds['all_class_ids'], [[0, 1, 2]] * 2)
  reg = np.array([[0.5], [2.0]], np.float32)
  assert set(RegressionHead().predictions(reg)) == {'predictions'}
  poisson = PoissonRegressionHead().predictions(reg)
  assert set(poisson) == {'predictions', 'logits'}
  np.testing.assert_allclose(poisson['predictions'], np.exp(reg), rtol=1e-6)
  logistic = LogisticRegressionHead().predictions(reg)
  np.testing.assert_allclose(logistic['predictions'], _sigmoid(reg), rtol=1e-6)
  assert set(MultiLabelHead(3).predictions(logits)) == {'logits', 'probabilities'}


def test_predict_specs_export_outputs_and_string_outputs():
  logits = np.array([[1.5], [-0.5]], np.float32)
  head = BinaryClassHead(label_vocabulary=['no', 'yes'])
  spec = head.create_estimator_spec({}, ModeKeys.PREDICT, logits)
  assert set(spec.export_outputs) == {'serving_default', 'classification', 'regression',
                                      'predict'}
  cls = spec.export_outputs['classification']
  assert isinstance(cls, export_output.ClassificationOutput)
  assert spec.export_outputs['serving_default'] is cls
  np.testing.assert_allclose(cls.scores, spec.predictions['probabilities'])
  np.testing.assert_array_equal(cls.classes, [[0, 1], [0, 1]])
  assert cls.class_vocabulary == ('no', 'yes')
  np.testing.assert_allclose(spec.export_outputs['regression'].value, _sigmoid(logits),
                             rtol=1e-6)
  assert isinstance(spec.export_outputs['predict'], export_output.PredictOutput)
  assert spec.string_outputs == {'classes': ('class_ids', ('no', 'yes')),
                                 'all_classes': ('all_class_ids', ('no', 'yes'))}
  # Without a vocabulary the class names are the decimal ids.
  spec3 = MultiClassHead(3).create_estimator_spec({}, ModeKeys.PREDICT, np.zeros((2, 3)))
  assert set(spec3.export_outputs) == {'serving_default', 'classification', 'predict'}
  assert spec3.string_outputs['classes'] == ('class_ids', ('0', '1', '2'))
  reg = RegressionHead().create_estimator_spec({}, ModeKeys.PREDICT, np.zeros((2, 1)))
  assert set(reg.export_outputs) == {'serving_default', 'regression', 'predict'}
  assert isinstance(reg.export_outputs['regression'], export_output.RegressionOutput)
  assert not reg.string_outputs
  ml = MultiLabelHead(2, label_vocabulary=['a', 'b']).create_estimator_spec(
      {}, ModeKeys.PREDICT, np.zeros((2, 2)))
  assert set(ml.predictions) == {'logits', 'probabilities', 'classes'}
  np.testing.assert_array_equal(ml.predictions['classes'], [[0, 1], [0, 1]])
  assert ml.string_outputs == {'classes': ('classes', ('a', 'b'))}


# ---------------------------------------------------------------------------------------------
# Metrics.

def test_metric_keys():
  assert set(BinaryClassHead().metrics()) == BINARY_METRICS
  with_thresholds = set(BinaryClassHead(thresholds=[0.3, 0.75]).metrics())
  assert with_thresholds == BINARY_METRICS | {
      f'{m}/positive_threshold_{t}' for m in ('accuracy', 'precision', 'recall')
      for t in ('0.3', '0.75')}
  assert set(BinaryClassHead(name='click').metrics()) == {f'{k}/click' for k in BINARY_METRICS}
  assert set(MultiClassHead(3).metrics()) == {'accuracy', 'average_loss'}
  regression = {'average_loss', 'label/mean', 'prediction/mean'}
  for head in (RegressionHead(), PoissonRegressionHead(), LogisticRegressionHead()):
    assert set(head.metrics()) == regression
  assert set(RegressionHead(name='price').metrics()) == {
      'average_loss/price', 'label/mean/price', 'prediction/mean/price'}
  assert set(MultiLabelHead(3, thresholds=[0.5], classes_for_class_based_metrics=[2]).metrics(
  )) == {'auc', 'auc_precision_recall', 'average_loss', 'accuracy/positive_threshold_0.5',
         'precision/positive_threshold_0.5', 'recall/positive_threshold_0.5',
         'probability_mean/class2', 'auc/class2', 'auc_precision_recall/class2'}
  assert {'probability_mean/b', 'auc/b', 'auc_precision_recall/b'} <= set(MultiLabelHead(
      2, label_vocabulary=['a', 'b'], classes_for_class_based_metrics=['b']).metrics())
  for state in BinaryClassHead().metrics().values():
    assert float(jnp.sum(jnp.asarray(jax.tree.leaves(state)[0]))) == 0.0


def _binary_data(n=40, seed=0):
  rng = np.random.default_rng(seed)
  labels = (rng.uniform(size=n) < 0.4).astype(np.float32)
  logits = (rng.normal(size=n) + 1.2 * (labels - 0.5)).astype(np.float32)
  w = rng.uniform(0.2, 3.0, size=n).astype(np.float32)
  return labels, logits, w


def test_binary_metric_values_with_weights_and_padding():
  labels, logits, w = _binary_data()
  mask = np.ones(40, np.float32)
  mask[30:] = 0.0
  # Padded rows hold junk that must not count.
  labels_p, logits_p = labels.copy(), logits.copy()
  labels_p[30:], logits_p[30:] = 1.0, 50.0
  head = BinaryClassHead(weight_column='w', thresholds=[0.3, 0.6])
  loss, got = _eval(head, {'w': w}, logits_p[:, None], labels_p, mask)
  y, x, ww = labels[:30], logits[:30], w[:30]
  p = _sigmoid(x)
  pred = (x > 0).astype(np.float32)
  wmean = lambda v: float((ww * v).sum() / ww.sum())
  tp, fp, fn = (ww * pred * y).sum(), (ww * pred * (1 - y)).sum(), (ww * (1 - pred) * y).sum()
  assert got['accuracy'] == pytest.approx(wmean(pred == y), rel=1e-5)
  assert got['precision'] == pytest.approx(tp / (tp + fp), rel=1e-5)
  assert got['recall'] == pytest.approx(tp / (tp + fn), rel=1e-5)
  assert got['label/mean'] == pytest.approx(wmean(y), rel=1e-5)
  assert got['accuracy_baseline'] == pytest.approx(max(wmean(y), 1 - wmean(y)), rel=1e-5)
  assert got['prediction/mean'] == pytest.approx(wmean(p), rel=1e-5)
  assert got['average_loss'] == pytest.approx(wmean(_np_sigmoid_ce(y, x)), rel=1e-5)
  for t in (0.3, 0.6):
    at = (p > t).astype(np.float32)
    tp_t, fp_t = (ww * at * y).sum(), (ww * at * (1 - y)).sum()
    fn_t = (ww * (1 - at) * y).sum()
    assert got[f'accuracy/positive_threshold_{t:g}'] == pytest.approx(wmean(at == y), rel=1e-5)
    assert got[f'precision/positive_threshold_{t:g}'] == pytest.approx(tp_t / (tp_t + fp_t),
                                                                       rel=1e-5)
    assert got[f'recall/positive_threshold_{t:g}'] == pytest.approx(tp_t / (tp_t + fn_t),
                                                                    rel=1e-5)
  # AUC: the exact weighted ROC AUC (rank statistic) within the 200-threshold approximation.
  pos, neg = y == 1, y == 0
  pair_w = ww[pos][:, None] * ww[neg][None, :]
  wins = (p[pos][:, None] > p[neg][None, :]) + 0.5 * (p[pos][:, None] == p[neg][None, :])
  assert got['auc'] == pytest.approx((pair_w * wins).sum() / pair_w.sum(), abs=0.02)
  # ... and exactly the metrics module's AUC on the real rows alone.
  pr_auc = jax.jit(lambda y, p, w: metrics_lib.auc(y, p, w, curve='PR').result())(y, p, ww)
  assert got['auc_precision_recall'] == pytest.approx(float(pr_auc), rel=1e-5)
  # The loss of the spec is the real rows' loss too.
  assert loss == pytest.approx(float((ww * _np_sigmoid_ce(y, x)).sum() / 30),
                                           rel=1e-5)


def test_update_metrics_streams_over_batches():
  labels, logits, w = _binary_data(seed=1)
  head = BinaryClassHead(weight_column='w', thresholds=[0.3, 0.6])
  update = jax.jit(lambda state, w, logits, labels: head.update_metrics(
      state, {'w': w}, logits, labels))
  state = head.metrics()
  for sl in (slice(0, 20), slice(20, 40)):
    state = update(state, w[sl], logits[sl, None], labels[sl])
  whole = update(head.metrics(), w, logits[:, None], labels)
  a, b = _results(state), _results(whole)
  assert set(a) == set(b)
  for k in a:
    assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k


def test_multi_class_metric_values():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(25, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=25)
  w = rng.uniform(0.5, 2, size=25).astype(np.float32)
  _, got = _eval(MultiClassHead(4, weight_column='w', name='kind'), {'w': w}, logits, labels)
  lse = np.log(np.exp(logits).sum(1))
  per = lse - logits[np.arange(25), labels]
  assert got['average_loss/kind'] == pytest.approx((w * per).sum() / w.sum(), rel=1e-5)
  assert got['accuracy/kind'] == pytest.approx(
      (w * (logits.argmax(1) == labels)).sum() / w.sum(), rel=1e-5)


def test_regression_metric_values():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(10, 2)).astype(np.float32)
  labels = rng.normal(size=(10, 2)).astype(np.float32)
  w = rng.uniform(0.5, 2, size=10).astype(np.float32)
  _, got = _eval(RegressionHead(2, weight_column='w'), {'w': w}, logits, labels)
  wm = lambda v: float((w[:, None] * v).sum() / (2 * w.sum()))
  assert got['average_loss'] == pytest.approx(wm((labels - logits) ** 2), rel=1e-5)
  assert got['label/mean'] == pytest.approx(wm(labels), rel=1e-5)
  assert got['prediction/mean'] == pytest.approx(wm(logits), rel=1e-5)
  _, got = _eval(PoissonRegressionHead(), {}, logits[:, :1], labels[:, 0])
  assert got['prediction/mean'] == pytest.approx(float(np.exp(logits[:, 0]).mean()), rel=1e-5)


def test_multi_label_metric_values():
  rng = np.random.default_rng(4)
  labels = (rng.uniform(size=(30, 3)) < 0.5).astype(np.int32)
  logits = rng.normal(size=(30, 3)).astype(np.float32) + labels
  w = rng.uniform(0.5, 2, size=30).astype(np.float32)
  head = MultiLabelHead(3, weight_column='w', thresholds=[0.5],
                        classes_for_class_based_metrics=[1])
  _, got = _eval(head, {'w': w}, logits, labels)
  p = _sigmoid(logits)
  per = _np_sigmoid_ce(labels, logits).mean(1)
  assert got['average_loss'] == pytest.approx((w * per).sum() / w.sum(), rel=1e-5)
  ww = np.broadcast_to(w[:, None], (30, 3))
  acc = ((p > 0.5) == labels)
  assert got['accuracy/positive_threshold_0.5'] == pytest.approx(
      (ww * acc).sum() / ww.sum(), rel=1e-5)
  assert got['probability_mean/class1'] == pytest.approx((w * p[:, 1]).sum() / w.sum(), rel=1e-5)
  auc = jax.jit(lambda y, p, w: metrics_lib.auc(y, p, w).result())
  assert got['auc'] == pytest.approx(float(auc(labels, p, ww)), rel=1e-5)
  assert got['auc/class1'] == pytest.approx(float(auc(labels[:, 1], p[:, 1], w)), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Labels, vocabularies and constructor checks.

def test_labels_to_ids_with_vocabulary():
  head = MultiClassHead(3, label_vocabulary=['cat', 'dog', 'eel'])
  np.testing.assert_array_equal(head.labels_to_ids(np.array(['eel', 'cat', 'eel'])), [2, 0, 2])
  np.testing.assert_array_equal(head.labels_to_ids(np.array([[b'dog'], [b'cat']], object)),
                                [[1], [0]])
  with pytest.raises(ValueError) as e:
    head.labels_to_ids(np.array(['cat', 'cow', 'yak']))
  assert 'cow' in str(e.value) and 'yak' in str(e.value) and "'eel'" in str(e.value)
  with pytest.raises(ValueError, match='must be strings'):
    head.labels_to_ids(np.array([0, 1]))
  binary = BinaryClassHead(label_vocabulary=('no', 'yes'))
  np.testing.assert_array_equal(binary.labels_to_ids(['yes', 'no']), [1, 0])


def test_labels_to_ids_range_checks():
  with pytest.raises(ValueError, match=r'\[0, 3\).*\[-1, 3\]'):
    MultiClassHead(3).labels_to_ids(np.array([0, 3, -1, 2]))
  with pytest.raises(ValueError, match='label_vocabulary'):
    MultiClassHead(3).labels_to_ids(np.array(['a']))
  with pytest.raises(ValueError, match=r'\[0, 1\].*2\.0'):
    BinaryClassHead().labels_to_ids(np.array([0., 1., 2.]))
  np.testing.assert_array_equal(BinaryClassHead().labels_to_ids([0, 1]), [0, 1])
  np.testing.assert_array_equal(BinaryClassHead().labels_to_ids(np.array([1., 0.])), [1, 0])
  with pytest.raises(ValueError, match=r'0 or 1; got \[0.25, 0.5\].*LogisticRegressionHead'):
    BinaryClassHead().labels_to_ids(np.array([[0.5], [1.], [0.25]]))
  np.testing.assert_array_equal(LogisticRegressionHead().labels_to_ids([0.5]), [0.5])
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    LogisticRegressionHead().labels_to_ids(np.array([1.5]))


def test_multi_label_labels_to_ids():
  head = MultiLabelHead(3, label_vocabulary=['a', 'b', 'c'])
  np.testing.assert_array_equal(head.labels_to_ids([['a', 'c'], [], ['b']]),
                                [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
  np.testing.assert_array_equal(head.labels_to_ids(np.array([['c', ''], ['a', 'b']])),
                                [[0, 0, 1], [1, 1, 0]])
  np.testing.assert_array_equal(head.labels_to_ids(np.array([[1, 0, 1]])), [[1, 0, 1]])
  with pytest.raises(ValueError, match="'z'"):
    head.labels_to_ids([['a', 'z']])
  np.testing.assert_array_equal(MultiLabelHead(3).labels_to_ids([[2], [0, 1]]),
                                [[0, 0, 1], [1, 1, 0]])
  with pytest.raises(ValueError, match='0 or 1'):
    MultiLabelHead(3).labels_to_ids(np.array([[2, 0, 1]]))


@pytest.mark.parametrize('make, match', [
    (lambda: MultiClassHead(1), 'n_classes'),
    (lambda: MultiLabelHead(1), 'n_classes'),
    (lambda: BinaryClassHead(thresholds=[0.5, 1.0]), r'thresholds must lie in \(0, 1\)'),
    (lambda: BinaryClassHead(thresholds=[0.0]), 'thresholds'),
    (lambda: BinaryClassHead(label_vocabulary='ab'), 'list or a tuple'),
    (lambda: BinaryClassHead(label_vocabulary=['a', 'b', 'c']), 'n_classes = 2'),
    (lambda: MultiClassHead(3, label_vocabulary=['a', 'a', 'b']), 'duplicate'),
    (lambda: RegressionHead(label_dimension=0), 'label_dimension'),
    (lambda: MultiLabelHead(2, classes_for_class_based_metrics=['a']), 'label_vocabulary'),
    (lambda: MultiLabelHead(2, classes_for_class_based_metrics=[5]), r'\[0, 2\)'),
])
def test_constructor_errors(make, match):
  with pytest.raises(ValueError, match=match):
    make()


# ---------------------------------------------------------------------------------------------
# Specs and MultiHead.

def test_train_and_eval_specs():
  head = BinaryClassHead()
  logits, labels = np.array([[0.5], [-1.0]], np.float32), np.array([1, 0])
  sgd = optax.sgd(0.1)
  train = head.create_estimator_spec({}, ModeKeys.TRAIN, logits, labels, optimizer=sgd)
  assert train.optimizer is sgd
  assert float(train.loss) == pytest.approx(float(_np_sigmoid_ce(labels, logits[:, 0]).mean()),
                                            rel=1e-5)
  with pytest.raises(ValueError, match='optimizer'):
    head.create_estimator_spec({}, ModeKeys.TRAIN, logits, labels)
  with pytest.raises(ValueError, match='labels'):
    head.create_estimator_spec({}, ModeKeys.EVAL, logits)
  ev_loss, ev_metrics = _eval(head, {}, logits, labels)
  assert ev_loss == pytest.approx(float(train.loss), rel=1e-6)
  assert set(ev_metrics) == BINARY_METRICS


def test_spec_traces_under_jit():
  head = MultiClassHead(3, weight_column='w')

  def step(logits, labels, w, mask):
    with padding.mask_scope(mask):
      spec = head.create_estimator_spec({'w': w}, ModeKeys.EVAL, logits, labels)
    return spec.loss, spec.eval_metrics

  out = jax.eval_shape(step, jnp.zeros((4, 3)), jnp.zeros((4,), jnp.int32), jnp.ones(4),
                       jnp.ones(4))
  assert out[0].shape == () and set(out[1]) == {'accuracy', 'average_loss'}


def _multi_head():
  return MultiHead([MultiClassHead(3, name='kind'), BinaryClassHead(name='spam')],
                   head_weights=[1.0, 2.0])


def test_multi_head_loss_predictions_and_metric_keys():
  mh = _multi_head()
  assert mh.name == 'kind_spam' and mh.logits_dimension == 4
  logits = np.array([[1., 2., 3., 0.5], [0., 0., 1., -1.]], np.float32)
  labels = {'kind': np.array([2, 0]), 'spam': np.array([1, 0])}
  kind = _loss(MultiClassHead(3), labels['kind'], logits[:, :3])
  spam = _loss(BinaryClassHead(), labels['spam'], logits[:, 3:])
  assert float(_loss(mh, labels, logits)) == pytest.approx(float(kind + 2 * spam), rel=1e-6)
  as_dict = {'kind': logits[:, :3], 'spam': logits[:, 3:]}
  assert float(_loss(mh, labels, as_dict)) == pytest.approx(float(kind + 2 * spam), rel=1e-6)
  preds = mh.predictions(logits)
  assert ('kind', 'class_ids') in preds and ('spam', 'logistic') in preds
  ev_loss, got = _eval(mh, {}, logits, labels)
  assert ev_loss == pytest.approx(float(kind + 2 * spam), rel=1e-6)
  assert set(got) == ({'loss/kind', 'loss/spam', 'accuracy/kind', 'average_loss/kind'}
                      | {f'{k}/spam' for k in BINARY_METRICS})
  assert got['loss/spam'] == pytest.approx(float(spam), rel=1e-6)
  assert set(mh.metrics()) == set(got)
  with pytest.raises(ValueError, match="head\\(s\\) \\['spam'\\]"):
    mh.loss({'kind': labels['kind']}, logits)
  with pytest.raises(ValueError, match='last dimension must be 4'):
    mh.loss(labels, logits[:, :3])


def test_multi_head_export_outputs():
  spec = _multi_head().create_estimator_spec({}, ModeKeys.PREDICT, np.zeros((2, 4), np.float32))
  assert set(spec.export_outputs) == {'serving_default', 'predict', 'kind', 'kind/classification',
                                      'kind/predict', 'spam', 'spam/classification',
                                      'spam/regression', 'spam/predict'}
  merged = spec.export_outputs['predict'].as_dict()
  assert {'kind/probabilities', 'spam/logistic'} <= set(merged)
  with pytest.raises(ValueError, match='name'):
    MultiHead([BinaryClassHead()])


def test_package_exports():
  for name in heads_lib.__all__:
    assert getattr(heads_lib, name) is not None


def test_binary_head_auc_for_ctr_like_scores(caplog):
  rng = np.random.default_rng(21)
  logits = rng.normal(-9.0, 1.0, 3000).astype(np.float32)  # probabilities around 1e-4
  p = _sigmoid(logits)
  labels = (rng.uniform(size=3000) < np.minimum(1.0, 2000.0 * p)).astype(np.float32)
  pos, neg = labels == 1, labels == 0
  exact = float(((p[pos][:, None] > p[neg][None, :]).sum()) / (pos.sum() * neg.sum()))
  assert 0.7 < exact < 0.95
  _, tf_like = _eval(BinaryClassHead(), {}, logits[:, None], labels)
  assert tf_like['auc'] == pytest.approx(0.5, abs=0.02)  # TF's thresholds: meaningless
  _, logit = _eval(BinaryClassHead(auc_thresholds='logit'), {}, logits[:, None], labels)
  assert logit['auc'] == pytest.approx(exact, abs=0.01)
  _, multi = _eval(MultiLabelHead(2, auc_thresholds='logit'), {},
                   np.stack([logits, logits], 1), np.stack([labels, labels], 1).astype(np.int32))
  assert multi['auc'] == pytest.approx(exact, abs=0.01)
  with pytest.raises(ValueError, match="auc_thresholds must be None, 'logit'"):
    BinaryClassHead(auc_thresholds='quantile')
  with pytest.raises(ValueError, match='auc_thresholds: thresholds must lie in'):
    BinaryClassHead(auc_thresholds=[2.0])
