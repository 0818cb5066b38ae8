"""Exports of every canned estimator and a custom model_fn, scored in a fresh process.

The fresh process imports only jestimator and numpy (never the test module that defines the
models) and must reproduce
`Estimator.predict` on raw features (unseen strings included) at batch sizes 1, 7 and 1000.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jestimator import export

from _export_models import BATCH_SIZES, KINDS, estimator_predict, make_raw

pytestmark = pytest.mark.slow

_SCRIPT = os.path.join(os.path.dirname(__file__), '_predict_in_fresh_process.py')
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _signature(kind):
  return 'serving_default' if kind == 'custom' else 'predict'


@pytest.fixture(scope='module')
def fresh_outputs(models, tmp_path_factory):
  """`(raw, {kind: {'<batch>/<key>': array}}, modules imported)` from one fresh subprocess.

  The vocabulary file the columns were built from is hidden meanwhile: exports carry a copy.
  """
  trained = {kind: models.get(kind) for kind in KINDS}
  tmp = tmp_path_factory.mktemp('fresh')
  raw = make_raw(max(BATCH_SIZES), seed=7)
  inputs = str(tmp / 'raw.npz')
  np.savez(inputs, **{k: (v.astype(str) if v.dtype == object else v) for k, v in raw.items()})
  jobs = [{'export': trained[kind][1], 'inputs': inputs, 'signature': _signature(kind),
           'batch_sizes': list(BATCH_SIZES), 'out': str(tmp / f'{kind}.npz')} for kind in KINDS]
  manifest = str(tmp / 'manifest.json')
  with open(manifest, 'w') as f:
    json.dump({'jobs': jobs, 'modules_out': str(tmp / 'modules.json')}, f)
  env = dict(os.environ, PYTHONPATH=_REPO)  # jestimator only: not the tests' directory
  os.rename(models.vocab_file, models.vocab_file + '.hidden')
  try:
    proc = subprocess.run([sys.executable, _SCRIPT, manifest], cwd=str(tmp), env=env,
                          capture_output=True, text=True, timeout=300)
  finally:
    os.rename(models.vocab_file + '.hidden', models.vocab_file)
  assert proc.returncode == 0, proc.stderr[-3000:]
  outs = {}
  for kind, job in zip(KINDS, jobs):
    with np.load(job['out'], allow_pickle=False) as data:
      outs[kind] = {k: data[k] for k in data.files}
  with open(tmp / 'modules.json') as f:
    modules = json.load(f)
  return raw, outs, modules


def test_fresh_process_never_imports_model_code(fresh_outputs):
  _, _, modules = fresh_outputs
  assert 'jestimator.export' in modules
  # The model_fns and column definitions live in _export_models: the export must not need them.
  assert not [m for m in modules if m.startswith(('conftest', '_models', '_export_models'))]
  # Serving needs no training, evaluation or prediction loop.
  assert not [m for m in modules if m.startswith(('jestimator.driver.train',
                                                  'jestimator.driver.evaluate',
                                                  'jestimator.driver.predict'))]


@pytest.mark.parametrize('kind', KINDS)
def test_fresh_process_matches_estimator_predict(models, fresh_outputs, kind):
  raw, outs, _ = fresh_outputs
  est, _ = models.get(kind)
  got = outs[kind]
  for n in BATCH_SIZES:
    expected = estimator_predict(est, {k: v[:n] for k, v in raw.items()})
    keys = {k.split('/', 1)[1] for k in got if k.startswith(f'{n}/')}
    assert keys == set(expected), (kind, n)
    for key, want in expected.items():
      have = got[f'{n}/{key}']
      assert have.shape == want.shape, (kind, n, key)
      if want.dtype == object:  # class names: bytes, exactly
        np.testing.assert_array_equal(have, want.astype('S'), err_msg=f'{kind} {n} {key}')
      else:
        assert have.dtype == want.dtype, (kind, n, key)
        assert np.max(np.abs(have.astype(np.float64) - want)) <= 1e-6, (kind, n, key)


def test_unseen_strings_behave_as_in_training(models, fresh_outputs):
  """Unseen values go to the OOV buckets and '' counts as missing, exactly as in training."""
  raw, _, _ = fresh_outputs
  est, path = models.get('linear')
  model = export.load(path)
  row = {k: v[:1] for k, v in raw.items()}
  variants = {}
  for color in ['red', 'purple', 'never-seen-1', '']:
    row['color'] = np.array([color], object)
    variants[color] = model.predict(row, 'predict')['logits'][0]
    est_logits = estimator_predict(est, row)['logits'][0]
    np.testing.assert_allclose(variants[color], est_logits, atol=1e-6)
  # num_oov_buckets=2: an unseen color hashes to a (trained) OOV bucket, not to a known color's
  # id, and '' is a missing value (no id at all).
  assert not np.allclose(variants['red'], variants['purple'])
  assert not np.allclose(variants['purple'], variants[''])
