"""The examples run, and the census demo meets its accuracy targets."""
import os
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), '..', 'examples')


def test_custom_model_fn_example_learns():
  module = runpy.run_path(os.path.join(EXAMPLES, 'custom_model_fn.py'))
  results = module['main']()
  assert results['global_step'] == 1000
  assert results['accuracy'] > 0.8 and results['auc'] > 0.88


@pytest.mark.slow
def test_tfrecord_example_trains_from_files_it_writes_and_serves_examples():
  results = runpy.run_path(os.path.join(EXAMPLES, 'tfrecord_census.py'))['main']()
  assert results['global_step'] == 255  # 2 epochs of 32,561 rows in batches of 256
  assert results['accuracy'] > 0.83 and results['auc'] > 0.87, results
  np.testing.assert_allclose(results['served_scores'], results['predict_scores'], atol=1e-6)


@pytest.mark.slow
def test_census_demo_meets_its_targets():
  run = subprocess.run([sys.executable, os.path.join(EXAMPLES, 'census_wide_and_deep.py')],
                       capture_output=True, text=True, timeout=300, check=True)
  out = run.stdout
  # Not a terminal: progress comes as log lines with the step of the known end and an ETA.
  assert re.search(r'train: step = \d+/\d+, loss = \S+, examples/sec = \S+, ETA', run.stderr), (
      run.stderr)
  assert re.search(r'evaluate: step = \d+/\d+, examples/sec', run.stderr), run.stderr
  metrics = dict(re.findall(r'^\s+(\w+)\s+([0-9.]+)$', out, re.M))
  # With TF's hash buckets (the default since jestimator hashes like TF) the demo reaches 0.853 /
  # 0.905; with jestimator's earlier hash it reached 0.855+: other bucket collisions, same model.
  assert float(metrics['accuracy']) >= 0.85, out
  assert float(metrics['auc']) >= 0.90, out
  assert 'served P(>50K) for two raw rows' in out


@pytest.mark.slow
def test_tune_census_example_prunes_and_plots(tmp_path):
  """A short run of examples/tune_census.py: 5 trials on 4,096 rows, pruned by the median rule."""
  import optuna
  main = runpy.run_path(os.path.join(EXAMPLES, 'tune_census.py'))['main']
  results = main(str(tmp_path), n_trials=5, max_steps=60, every_n_steps=20, train_rows=4096)
  assert len(results["states"]) == 5 and set(results['states']) <= {'COMPLETE', 'PRUNED'}
  assert 'PRUNED' in results['states'], results['states']  # seeded: the median rule prunes
  assert results['best_value'] < 0.6  # below the 0.55 a constant predictor reaches on Adult
  assert results['best_accuracy'] > 0.76
  with open(results['plot'], 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  import matplotlib.image
  image = matplotlib.image.imread(results['plot'])
  assert image.shape[:2] == (400, 700) and image.std() > 0.05  # the 7x4 in figure, drawn on
  study = optuna.load_study(study_name='jestimator',
                            storage=f'sqlite:///{tmp_path}/study.db')
  assert study.best_trial.params == results['best_params']


@pytest.mark.slow
def test_gan_example_trains_resumes_and_samples_approach_the_data(tmp_path):
  """examples/gan_mixture.py: a GAN train op (alternating updates, EMA of the generator) trains,
  resumes in a new Estimator, and the EMA generator's samples move onto the ring of modes."""
  results = runpy.run_path(os.path.join(EXAMPLES, 'gan_mixture.py'))['main'](str(tmp_path))
  assert results['global_step'] == 2000
  # From a blob at the origin (about 1.7 from the modes) onto the ring: 0.11 when written.
  assert results['distance_start'] > 1.0
  assert results['distance'] < min(0.25, results['distance_half_way'])
  assert results['modes_covered'] == 8
  with open(results['plot'], 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
