"""Tests of jestimator.metrics against independent numpy computations and hand-derived values."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jestimator import metrics, padding

RNG = np.random.default_rng(1234)


# ----------------------------------------------------------------------------------------------
# Independent numpy references (float64, plain loops).

def np_keras_thresholds(n):
  return np.float32([0.0 - 1e-7] + [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)] + [1.0 + 1e-7])


def np_confusion(labels, preds, weights, thresholds):
  lab = np.asarray(labels).ravel() != 0
  pr = np.asarray(preds, np.float32).ravel()
  w = np.broadcast_to(np.asarray(weights, np.float64), np.shape(labels)).ravel()
  tp, fp, tn, fn = (np.zeros(len(thresholds)) for _ in range(4))
  for i, t in enumerate(np.float32(thresholds)):
    above = pr > t
    tp[i] = w[above & lab].sum()
    fp[i] = w[above & ~lab].sum()
    tn[i] = w[~above & ~lab].sum()
    fn[i] = w[~above & lab].sum()
  return tp, fp, tn, fn


def np_keras_auc(labels, preds, weights, num_thresholds, curve, method):
  tp, fp, tn, fn = np_confusion(labels, preds, weights, np_keras_thresholds(num_thresholds))
  div = lambda a, b: a / b if b != 0 else 0.0
  total = 0.0
  for i in range(num_thresholds - 1):
    j = i + 1
    if curve == 'PR' and method == 'interpolation':
      dtp = tp[i] - tp[j]
      p_a, p_b = tp[i] + fp[i], tp[j] + fp[j]
      slope = div(dtp, max(p_a - p_b, 0.0))
      intercept = tp[j] - slope * p_b
      ratio = p_a / p_b if (p_a > 0 and p_b > 0) else 1.0
      total += div(slope * (dtp + intercept * math.log(ratio)), tp[j] + fn[j])
      continue
    if curve == 'ROC':
      x_a, x_b = div(fp[i], fp[i] + tn[i]), div(fp[j], fp[j] + tn[j])
      y_a, y_b = div(tp[i], tp[i] + fn[i]), div(tp[j], tp[j] + fn[j])
    else:
      x_a, x_b = div(tp[i], tp[i] + fn[i]), div(tp[j], tp[j] + fn[j])
      y_a, y_b = div(tp[i], tp[i] + fp[i]), div(tp[j], tp[j] + fp[j])
    height = {'interpolation': (y_a + y_b) / 2, 'minoring': min(y_a, y_b),
              'majoring': max(y_a, y_b)}[method]
    total += (x_a - x_b) * height
  return total


def np_rank_auc(labels, scores):
  """Exact ROC AUC: P(score_pos > score_neg) + 0.5 P(tie)."""
  pos, neg = scores[labels == 1], scores[labels == 0]
  greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return greater / (len(pos) * len(neg))


def binary_data(n, k=None, seed=0):
  rng = np.random.default_rng(seed)
  shape = (n,) if k is None else (n, k)
  labels = rng.integers(0, 2, shape)
  preds = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.0, 1.0).astype(np.float32)
  weights = rng.uniform(0.0, 3.0, (n,) if k is None else (n, 1)).astype(np.float32)
  return labels, preds, weights


# ----------------------------------------------------------------------------------------------
# Means and regression errors.

def test_mean_hand_values():
  assert float(metrics.mean(jnp.array([1.0, 3.0])).result()) == 2.0
  assert float(metrics.mean(jnp.array([1.0, 3.0]), weights=jnp.array([1.0, 3.0])).result()) == 2.5
  state = metrics.mean(jnp.array([[1.0, 2.0], [3.0, 5.0]]), weights=jnp.array([0.0, 2.0]))
  # [batch] weights apply per example to [batch, k] values: (3 + 5) * 2 / (2 * 2).
  assert (float(state.total), float(state.count)) == (16.0, 4.0)
  assert float(state.result()) == 4.0
  # [batch, 1] weights with [batch] values are squeezed (as Keras does).
  assert float(metrics.mean(jnp.array([1.0, 3.0]), jnp.array([[3.0], [1.0]])).result()) == 1.5
  assert float(metrics.mean(7.0).result()) == 7.0


def test_regression_errors_against_numpy():
  labels = RNG.normal(size=(16, 3)).astype(np.float32)
  preds = RNG.normal(size=(16, 3)).astype(np.float32)
  w = RNG.uniform(0, 2, (16,)).astype(np.float32)
  wb = np.broadcast_to(w[:, None], labels.shape)
  mse = (wb * (labels - preds) ** 2).sum() / wb.sum()
  mae = (wb * np.abs(labels - preds)).sum() / wb.sum()
  np.testing.assert_allclose(metrics.mean_squared_error(labels, preds, w).result(), mse, rtol=1e-5)
  np.testing.assert_allclose(metrics.mean_absolute_error(labels, preds, w).result(), mae, rtol=1e-5)
  np.testing.assert_allclose(metrics.root_mean_squared_error(labels, preds, w).result(),
                             np.sqrt(mse), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Classification counts.

def test_accuracy_against_numpy():
  labels = RNG.integers(0, 4, (50,))
  preds = np.where(RNG.uniform(size=50) < 0.6, labels, RNG.integers(0, 4, (50,)))
  w = RNG.uniform(0, 1, (50,))
  expected = (w * (labels == preds)).sum() / w.sum()
  np.testing.assert_allclose(metrics.accuracy(labels, preds, w).result(), expected, rtol=1e-5)
  np.testing.assert_allclose(metrics.accuracy(labels, preds).result(), (labels == preds).mean(),
                             rtol=1e-6)


def test_accuracy_at_threshold_hand_values():
  labels = jnp.array([1.0, 0.0, 1.0, 0.0])
  probs = jnp.array([0.8, 0.4, 0.3, 0.6])
  # > 0.5: [1, 0, 0, 1] -> hits [1, 1, 0, 0]; > 0.35: [1, 1, 0, 1] -> hits [1, 0, 0, 0].
  assert float(metrics.accuracy_at_threshold(labels, probs, 0.5).result()) == 0.5
  assert float(metrics.accuracy_at_threshold(labels, probs, 0.35).result()) == 0.25
  w = jnp.array([1.0, 1.0, 0.0, 0.0])
  assert float(metrics.accuracy_at_threshold(labels, probs, 0.5, weights=w).result()) == 1.0


def test_precision_recall_against_numpy():
  labels, _, w = binary_data(64, k=2, seed=3)
  preds = RNG.integers(0, 2, labels.shape)
  wb = np.broadcast_to(w, labels.shape)
  tp = (wb * ((preds == 1) & (labels == 1))).sum()
  fp = (wb * ((preds == 1) & (labels == 0))).sum()
  fn = (wb * ((preds == 0) & (labels == 1))).sum()
  np.testing.assert_allclose(metrics.precision(labels, preds, w).result(), tp / (tp + fp), 1e-5)
  np.testing.assert_allclose(metrics.recall(labels, preds, w).result(), tp / (tp + fn), 1e-5)
  # Booleans behave like {0, 1}.
  np.testing.assert_allclose(metrics.precision(labels == 1, preds == 1, w).result(),
                             tp / (tp + fp), 1e-5)


def test_at_thresholds_against_numpy():
  labels, preds, w = binary_data(200, seed=4)
  thresholds = [0.0, 0.3, 0.5, 0.9, 1.0]
  tp, fp, _, fn = np_confusion(labels, preds, w, thresholds)
  p = metrics.precision_at_thresholds(labels, preds, thresholds, weights=w).result()
  r = metrics.recall_at_thresholds(labels, preds, thresholds, weights=w).result()
  assert p.shape == r.shape == (5,)
  np.testing.assert_allclose(p, np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-30), 0), 1e-5)
  np.testing.assert_allclose(r, tp / (tp + fn), 1e-5)
  assert float(p[-1]) == 0.0  # nothing is > 1.0: 0/0 -> 0


# ----------------------------------------------------------------------------------------------
# AUC.

@pytest.mark.parametrize('curve', ['ROC', 'PR'])
@pytest.mark.parametrize('method', ['interpolation', 'minoring', 'majoring'])
def test_auc_matches_keras_formula(curve, method):
  labels, preds, w = binary_data(300, k=2, seed=5)
  for n in (200, 7):
    got = metrics.auc(labels, preds, w, num_thresholds=n, curve=curve, summation_method=method)
    want = np_keras_auc(labels, preds, w, n, curve, method)
    np.testing.assert_allclose(float(got.result()), want, rtol=2e-5, atol=1e-6)


def test_auc_confusion_counts_and_thresholds():
  labels, preds, w = binary_data(100, seed=6)
  state = metrics.auc(labels, preds, w, num_thresholds=11)
  np.testing.assert_array_equal(metrics.auc_thresholds(11), np_keras_thresholds(11))
  got = (state.true_positives, state.false_positives, state.true_negatives, state.false_negatives)
  for got, want in zip(got, np_confusion(labels, preds, w, np_keras_thresholds(11))):
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_auc_hand_values():
  labels = np.array([0, 0, 1, 1])
  preds = np.array([0.1, 0.4, 0.35, 0.8], np.float32)
  # One inverted pair out of four; the 200-threshold grid separates every score, so ROC is exact.
  np.testing.assert_allclose(metrics.auc(labels, preds).result(), 0.75, rtol=1e-6)
  # A perfect ranking has ROC-AUC 1 and (interpolated) PR-AUC 1.
  perfect = metrics.auc(np.array([0, 1]), np.array([0.2, 0.9], np.float32), curve='PR')
  np.testing.assert_allclose(perfect.result(), 1.0, rtol=1e-6)


def test_roc_auc_close_to_exact_rank_auc():
  labels, preds, _ = binary_data(2000, seed=7)
  preds = np.clip(preds + RNG.uniform(-0.1, 0.1, preds.shape), 0, 1).astype(np.float32)
  exact = np_rank_auc(labels, preds)
  assert 0.6 < exact < 0.95
  assert abs(float(metrics.auc(labels, preds).result()) - exact) < 1e-2


# ----------------------------------------------------------------------------------------------
# Streaming: merging, jit, padding.

def _all_metrics(y, p, w, cls):
  return {
      'mean': metrics.mean(p, w),
      'accuracy': metrics.accuracy(cls, y, w),
      'acc_at': metrics.accuracy_at_threshold(y, p, 0.5, w),
      'precision': metrics.precision(y, cls, w),
      'recall': metrics.recall(y, cls, w),
      'p_at': metrics.precision_at_thresholds(y, p, [0.25, 0.5, 0.75], w),
      'r_at': metrics.recall_at_thresholds(y, p, [0.25, 0.5, 0.75], w),
      'auc': metrics.auc(y, p, w),
      'auc_pr': metrics.auc(y, p, w, curve='PR'),
      'mse': metrics.mean_squared_error(y.astype(jnp.float32), p, w),
      'mae': metrics.mean_absolute_error(y.astype(jnp.float32), p, w),
      'rmse': metrics.root_mean_squared_error(y.astype(jnp.float32), p, w),
  }


@jax.jit
def _step(y, p, w):
  return _all_metrics(y, p, w, (p > 0.5).astype(y.dtype))


@jax.jit
def _merge(a, b):
  return jax.tree.map(metrics.merge, a, b, is_leaf=metrics.is_metric)


def _assert_results_close(a, b, rtol=1e-5):
  ra, rb = metrics.compute(a), metrics.compute(b)
  assert ra.keys() == rb.keys()
  for k in ra:
    np.testing.assert_allclose(ra[k], rb[k], rtol=rtol, atol=1e-6, err_msg=k)


def test_merged_batches_equal_one_big_batch_under_jit():
  y, p, w = binary_data(96, seed=8)
  whole = _step(y, p, w)
  total = _step(y[:32], p[:32], w[:32])
  total = _merge(total, _step(y[32:64], p[32:64], w[32:64]))
  total = _merge(total, _step(y[64:], p[64:], w[64:]))
  assert all(isinstance(v, metrics.Metric) for v in total.values())
  _assert_results_close(whole, total)
  # Starting from zeros changes nothing; results also compile under jit.
  zeros = jax.tree.map(lambda m: m.zeros_like(), whole, is_leaf=metrics.is_metric)
  _assert_results_close(whole, _merge(zeros, whole))
  in_jit = jax.jit(lambda s: {k: m.result() for k, m in s.items()})(total)
  for k, v in metrics.compute(total).items():
    np.testing.assert_allclose(in_jit[k], v, rtol=1e-6, err_msg=k)


def test_padding_mask_ignores_padded_rows():
  y, p, w = binary_data(40, seed=9)
  n_real = 29
  garbage_y = y.copy()
  garbage_y[n_real:] = 1 - garbage_y[n_real:]
  garbage_p = p.copy()
  garbage_p[n_real:] = 1.0 - garbage_p[n_real:]
  mask = (np.arange(40) < n_real).astype(np.float32)

  @jax.jit
  def masked_step(y, p, w, mask):
    with padding.mask_scope(mask):
      return _all_metrics(y, p, w, (p > 0.5).astype(y.dtype))

  unpadded = _step(y[:n_real], p[:n_real], w[:n_real])
  _assert_results_close(unpadded, masked_step(garbage_y, garbage_p, w, mask))
  # The mask also applies when no weights are given, and to [batch, k] values.
  with padding.mask_scope(jnp.asarray(mask)):
    two_col = metrics.mean(np.stack([p, 2 * p], axis=1))
    assert float(metrics.mean(3.0).count) == 1.0
  np.testing.assert_allclose(two_col.result(), 1.5 * p[:n_real].mean(), rtol=1e-5)
  # A batch that is all padding contributes nothing, even for a scalar value.
  with padding.mask_scope(jnp.zeros(4)):
    assert float(metrics.mean(5.0).count) == 0.0
    assert float(metrics.auc(np.ones(4), np.ones(4, np.float32)).true_positives.sum()) == 0.0


def test_division_by_zero_gives_zero():
  y, p, w = binary_data(8, seed=10)
  empty = jax.tree.map(lambda m: m.zeros_like(), _step(y, p, w), is_leaf=metrics.is_metric)
  for name, value in metrics.compute(empty).items():
    assert np.all(np.asarray(value) == 0.0), name
  # Only negatives: recall and ROC-AUC have no positives to divide by.
  negatives = metrics.auc(np.zeros(5), np.linspace(0, 1, 5).astype(np.float32))
  assert float(negatives.result()) == 0.0
  assert float(metrics.recall(np.zeros(3), np.ones(3)).result()) == 0.0
  assert float(metrics.precision(np.ones(3), np.zeros(3)).result()) == 0.0


def test_compute_types():
  out = metrics.compute({'m': metrics.mean(jnp.array([1.0, 2.0])),
                         'p': metrics.precision_at_thresholds(np.ones(2), np.ones(2), [0.5, 0.7])})
  assert type(out['m']) is float and out['m'] == 1.5
  assert isinstance(out['p'], np.ndarray) and out['p'].shape == (2,)


# ----------------------------------------------------------------------------------------------
# Errors.

def test_errors():
  y, p = np.zeros(4), np.zeros(4, np.float32)
  with pytest.raises(ValueError, match=r"curve 'XY'.*\['ROC', 'PR'\]"):
    metrics.auc(y, p, curve='XY')
  with pytest.raises(ValueError, match=r"summation_method 'trapezoid'.*interpolation.*minoring"):
    metrics.auc(y, p, summation_method='trapezoid')
  with pytest.raises(ValueError, match='num_thresholds must be an integer >= 2, got 1'):
    metrics.auc(y, p, num_thresholds=1)
  with pytest.raises(ValueError, match=r'labels of shape \(4,\) and predictions of shape \(4, 1\)'):
    metrics.accuracy(y, p[:, None])
  with pytest.raises(ValueError, match=r'auc: labels .*\(3,\).*\(4,\)'):
    metrics.auc(np.zeros(3), p)
  with pytest.raises(ValueError, match=r'weights of shape \(3,\) cannot be broadcast.*\(4,\)'):
    metrics.mean(p, weights=np.ones(3))
  with pytest.raises(ValueError, match='different configurations.*num_thresholds'):
    metrics.auc(y, p).merge(metrics.auc(y, p, num_thresholds=10))
  with pytest.raises(TypeError, match='cannot merge a Mean state with a Precision state'):
    metrics.mean(p).merge(metrics.precision(y, p))
  with pytest.raises(ValueError, match='padding mask'):
    with padding.mask_scope(jnp.ones(4)):
      metrics.mean(np.ones(3))
  with pytest.raises(TypeError, match=r"metrics\['x'\] must be a jestimator.metrics state"):
    metrics.compute({'x': 1.0})


# ----------------------------------------------------------------------------------------------
# AUC of scores in a narrow range (rare-event / CTR-like models).

def _ctr_data(n=4000, seed=11):
  """Scores in [0, 0.001] and labels whose rate grows with the score (exact AUC about 0.8)."""
  rng = np.random.default_rng(seed)
  scores = rng.uniform(0.0, 1e-3, n).astype(np.float32)
  labels = (rng.uniform(size=n) < 900.0 * scores).astype(np.int32)
  return labels, scores


def np_average_precision(labels, scores):
  order = np.argsort(-scores, kind='stable')
  hits = labels[order] == 1
  precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision_at[hits].sum() / hits.sum())


def test_auc_of_narrow_scores_tf_thresholds_are_wrong_and_warn(caplog):
  labels, scores = _ctr_data()
  exact = np_rank_auc(labels, scores)
  assert 0.75 < exact < 0.9
  with caplog.at_level('WARNING', logger='jestimator'):
    got = metrics.compute({'auc': metrics.auc(labels, scores)})['auc']
  assert got == pytest.approx(0.5, abs=1e-6)  # all scores share TF's first interval
  warning = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert len(warning) == 1 and "'auc'" in warning[0] and '100%' in warning[0]
  assert 'logit_thresholds' in warning[0] and "auc_thresholds='logit'" in warning[0]


@pytest.mark.parametrize('make', ['logit', 'quantile'])
def test_auc_with_thresholds_that_follow_the_data(caplog, make):
  labels, scores = _ctr_data()
  thresholds = (metrics.logit_thresholds() if make == 'logit' else
                metrics.quantile_thresholds(_ctr_data(seed=12)[1]))  # another sample's scores
  with caplog.at_level('WARNING', logger='jestimator'):
    got = metrics.compute({
        'roc': metrics.auc(labels, scores, thresholds=thresholds),
        'pr': metrics.auc(labels, scores, thresholds=thresholds, curve='PR')})
  assert not [r for r in caplog.records if r.levelname == 'WARNING']
  assert got['roc'] == pytest.approx(np_rank_auc(labels, scores), abs=0.01)
  assert got['pr'] == pytest.approx(np_average_precision(labels, scores), abs=0.02)


def test_auc_explicit_thresholds_counts_and_formula_match_numpy():
  labels, preds, weights = binary_data(300, seed=13)
  inner = [0.7, 0.2, 0.45, 0.2]  # unsorted, with a duplicate: sorted and merged
  state = metrics.auc(labels, preds, weights, thresholds=inner, curve='PR')
  full = np.float32([-1e-7, 0.2, 0.45, 0.7, 1 + 1e-7])
  assert state.num_thresholds == 5 and state.thresholds == pytest.approx((0.2, 0.45, 0.7))
  np.testing.assert_array_equal(state.threshold_values(), full)
  for got, want in zip((state.true_positives, state.false_positives, state.true_negatives,
                        state.false_negatives), np_confusion(labels, preds, weights, full)):
    np.testing.assert_allclose(got, want, rtol=1e-5)
  # With the evenly spaced thresholds written out explicitly, the same value as the default.
  even = np_keras_thresholds(7)[1:-1]
  np.testing.assert_allclose(metrics.auc(labels, preds, weights, thresholds=even).result(),
                             np_keras_auc(labels, preds, weights, 7, 'ROC', 'interpolation'),
                             rtol=1e-5)
  # Thresholds are part of the state's configuration: states merge only with the same ones.
  with pytest.raises(ValueError, match='different configurations'):
    state.merge(metrics.auc(labels, preds, weights, thresholds=[0.1, 0.2, 0.3], curve='PR'))


def test_threshold_helpers():
  t = metrics.logit_thresholds(7, max_logit=2.0)
  np.testing.assert_allclose(t, 1 / (1 + np.exp(-np.linspace(-2, 2, 5))), rtol=1e-6)
  q = metrics.quantile_thresholds(np.array([0.0, 0.0, 0.1, 0.2, 0.4, np.nan, 2.0]), 5)
  # Levels 0, 0.5, 1 of the 6 finite values: 0, (0.1 + 0.2) / 2, 2 clipped to 1.
  np.testing.assert_allclose(q, [0.0, 0.15, 1.0], rtol=1e-6)
  np.testing.assert_allclose(metrics.quantile_thresholds([0.3] * 4 + [0.5], 5), [0.3, 0.5])
  assert metrics.logit_thresholds().shape == (198,)
  with pytest.raises(ValueError, match='thresholds must lie in \\[0, 1\\].*1.5'):
    metrics.auc(np.array([1]), np.array([0.5]), thresholds=[0.5, 1.5])
  with pytest.raises(ValueError, match='num_thresholds \\(50\\) or thresholds, not both'):
    metrics.auc(np.array([1]), np.array([0.5]), num_thresholds=50, thresholds=[0.5])
  with pytest.raises(ValueError, match='no finite value'):
    metrics.quantile_thresholds([np.nan])


def test_no_coarseness_warning_for_spread_scores(caplog):
  labels, preds, weights = binary_data(500, seed=14)
  with caplog.at_level('WARNING', logger='jestimator'):
    metrics.compute({'auc': metrics.auc(labels, preds, weights)})
  assert not caplog.records
