"""Heads against TF 2.15: the cases of TF Estimator's head tests (and seeded random widenings),
each checked for the training loss, every eval metric (same key set) and every numeric
prediction. Inputs and TF's outputs: `data/heads.json` (`tf_scripts/gen_heads.py`, which also
checks that TF 2.15 still gives the numbers TF's tests pinned)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jestimator import columns as fc
from jestimator import heads

from ._tf import assert_close, load

CASES = load('heads')['cases']
_KINDS = {'binary': heads.BinaryClassHead, 'multi_class': heads.MultiClassHead,
          'regression': heads.RegressionHead, 'poisson': heads.PoissonRegressionHead,
          'logistic': heads.LogisticRegressionHead, 'multi_label': heads.MultiLabelHead}
# Reductions of TF's generated-data cases differ from a float64 reference by float32 rounding of
# 40 summed terms; TF and XLA sum in different orders.
_RTOL = 1e-5


def make_head(case):
  kw = dict(case['head'])
  wc = kw.get('weight_column')
  if isinstance(wc, dict):
    kw['weight_column'] = fc.numeric_column(wc['numeric_column'], normalizer_fn=lambda x: x + 1.)
  if kw.get('inverse_link_fn') == 'exp':
    kw['inverse_link_fn'] = jnp.exp
  return _KINDS[case['kind']](**kw)


def _inputs(case, head):
  logits = np.asarray(case['logits'], np.float32)
  features = {k: np.asarray(v, np.float32) for k, v in case['features'].items()}
  labels = None
  if case['labels'] is not None:
    labels = head.labels_to_ids(np.asarray(case['labels'], object if isinstance(
        np.asarray(case['labels']).flat[0], str) else None))
  return logits, labels, features


@pytest.mark.parametrize('name', sorted(CASES))
def test_predictions(name):
  case = CASES[name]
  head = make_head(case)
  logits, _, _ = _inputs(case, head)
  got = head.predictions(logits)
  expected = case['expected']['predictions']
  assert set(expected) <= set(got), f'missing prediction keys {set(expected) - set(got)}'
  for key, value in expected.items():
    if key == 'all_class_ids' and np.ndim(case['logits']) > 2:
      # TF builds all_class_ids as [batch, n] from the first dimension only, also for
      # [batch, d, n] logits; jestimator gives [batch, d, n] (README: documented differences).
      assert_close(np.asarray(got[key])[:, 0], value, what=key)
      continue
    assert_close(got[key], value, rtol=_RTOL, what=key)


_LABELLED = sorted(n for n, c in CASES.items() if c['labels'] is not None)


@pytest.mark.parametrize('name', _LABELLED)
def test_loss(name):
  case = CASES[name]
  head = make_head(case)
  logits, labels, features = _inputs(case, head)
  loss = head.loss(labels, logits, features=features,
                   regularization_losses=case['regularization_losses'])
  assert_close(loss, case['expected']['loss'], rtol=_RTOL, what='loss')


@pytest.mark.parametrize('name', _LABELLED)
def test_eval_metrics(name):
  case = CASES[name]
  head = make_head(case)
  logits, labels, features = _inputs(case, head)
  regs = case['regularization_losses']
  states = head.update_metrics(head.metrics(regularization_losses=regs), features, logits,
                               labels, regularization_losses=regs)
  expected = case['expected']['metrics']
  assert set(states) == set(expected)
  for key, value in expected.items():
    # AUCs: TF's 200 thresholds carry a 1e-7 epsilon at both ends: 1e-5 covers it.
    assert_close(states[key].result(), value, rtol=_RTOL, atol=1e-5, what=key)
