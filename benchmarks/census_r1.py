"""The census r1 wide & deep program ported to jestimator, run beside TF 2.15's numbers.

tensorflow/models `official/r1/wide_deep` (census_main.py + census_dataset.py) uses TF's v1 canned
estimators; the port changes the imports (`jestimator.compat.v1` for `tf.estimator`,
`jestimator.columns` for `tf.feature_column`) and reads the CSV with the same defaults. Protocol as
the program (batch 40, full-data shuffle, train `--epochs`, evaluate every 2 epochs) and as
`tests/tf_parity/tf_scripts/census_r1_tf.py`, whose JSON (`tests/tf_parity/data/census_r1_tf.json`,
TF 2.15.1 with `tf.compat.v1.estimator`) this compares with.

  python -m benchmarks.census_r1 [--epochs 4] [--seeds 0 1 2] [--models deep wide_deep] [--append]

Writes `benchmarks/results/census_r1_cpu.json`: every run of both, and per model the mean final
accuracy / AUC of each side and their difference (the target: |difference| <= 0.01).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

import jestimator as je
from jestimator import columns as fc
from jestimator.compat import v1 as estimator

DATA = os.environ.get('ADULT_DIR', '/work/shared/data/adult')
ROOT = pathlib.Path(__file__).resolve().parent.parent
TF_JSON = ROOT / 'tests' / 'tf_parity' / 'data' / 'census_r1_tf.json'
OUT = ROOT / 'benchmarks' / 'results' / 'census_r1_cpu.json'
CSV_COLUMNS = ['age', 'workclass', 'fnlwgt', 'education', 'education_num', 'marital_status',
               'occupation', 'relationship', 'race', 'gender', 'capital_gain', 'capital_loss',
               'hours_per_week', 'native_country', 'income_bracket']
NUMERIC = {'age', 'fnlwgt', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week'}
HASH_BUCKET_SIZE = 1000


def build_model_columns():
  """census_dataset.build_model_columns with `tf.feature_column` replaced by jestimator's."""
  age = fc.numeric_column('age')
  education_num = fc.numeric_column('education_num')
  capital_gain = fc.numeric_column('capital_gain')
  capital_loss = fc.numeric_column('capital_loss')
  hours_per_week = fc.numeric_column('hours_per_week')
  education = fc.categorical_column_with_vocabulary_list('education', [
      'Bachelors', 'HS-grad', '11th', 'Masters', '9th', 'Some-college', 'Assoc-acdm',
      'Assoc-voc', '7th-8th', 'Doctorate', 'Prof-school', '5th-6th', '10th', '1st-4th',
      'Preschool', '12th'])
  marital_status = fc.categorical_column_with_vocabulary_list('marital_status', [
      'Married-civ-spouse', 'Divorced', 'Married-spouse-absent', 'Never-married', 'Separated',
      'Married-AF-spouse', 'Widowed'])
  relationship = fc.categorical_column_with_vocabulary_list('relationship', [
      'Husband', 'Not-in-family', 'Wife', 'Own-child', 'Unmarried', 'Other-relative'])
  workclass = fc.categorical_column_with_vocabulary_list('workclass', [
      'Self-emp-not-inc', 'Private', 'State-gov', 'Federal-gov', 'Local-gov', '?',
      'Self-emp-inc', 'Without-pay', 'Never-worked'])
  occupation = fc.categorical_column_with_hash_bucket('occupation',
                                                      hash_bucket_size=HASH_BUCKET_SIZE)
  age_buckets = fc.bucketized_column(age, boundaries=[18, 25, 30, 35, 40, 45, 50, 55, 60, 65])
  base_columns = [education, marital_status, relationship, workclass, occupation, age_buckets]
  crossed_columns = [
      fc.crossed_column(['education', 'occupation'], hash_bucket_size=HASH_BUCKET_SIZE),
      fc.crossed_column([age_buckets, 'education', 'occupation'],
                        hash_bucket_size=HASH_BUCKET_SIZE)]
  wide_columns = base_columns + crossed_columns
  deep_columns = [age, education_num, capital_gain, capital_loss, hours_per_week,
                  fc.indicator_column(workclass), fc.indicator_column(education),
                  fc.indicator_column(marital_status), fc.indicator_column(relationship),
                  fc.embedding_column(occupation, dimension=8)]
  return wide_columns, deep_columns


def read_csv(path: str):
  """(features, labels) of one CSV file: `decode_csv` with the program's defaults (ints for the
  numeric columns, strings otherwise) and its label rule `income_bracket == '>50K'`."""
  with open(path, newline='') as f:
    rows = list(csv.reader(f))[1:]  # the bundled files have a header line
  table = np.array(rows, dtype=object)
  features = {name: (table[:, i].astype(np.int64)[:, None] if name in NUMERIC
                     else table[:, i:i + 1].astype(str).astype(object))
              for i, name in enumerate(CSV_COLUMNS)}
  labels = (features.pop('income_bracket')[:, 0] == '>50K').astype(np.int64)
  return features, labels


def build_estimator(model_dir, model_type, seed):
  """census_main.build_estimator with `tf.estimator` replaced by `jestimator.compat.v1`."""
  wide_columns, deep_columns = build_model_columns()
  hidden_units = [100, 75, 50, 25]
  config = estimator.RunConfig(seed=seed, log_step_count_steps=10**9)
  if model_type == 'wide':
    return estimator.LinearClassifier(model_dir=model_dir, feature_columns=wide_columns,
                                      config=config)
  if model_type == 'deep':
    return estimator.DNNClassifier(model_dir=model_dir, feature_columns=deep_columns,
                                   hidden_units=hidden_units, config=config)
  return estimator.DNNLinearCombinedClassifier(
      model_dir=model_dir, linear_feature_columns=wide_columns,
      dnn_feature_columns=deep_columns, dnn_hidden_units=hidden_units, config=config)


def run(model_type: str, seed: int, epochs: int, between: int, batch_size: int, train, test):
  with tempfile.TemporaryDirectory() as model_dir:
    est = build_estimator(model_dir, model_type, seed)
    t0 = time.time()
    evals = []
    for _ in range(epochs // between):
      est.train(je.inputs.numpy_input_fn(*train, batch_size=batch_size, num_epochs=between,
                                         shuffle=True, seed=seed))
      res = est.evaluate(je.inputs.numpy_input_fn(*test, batch_size=batch_size, num_epochs=1,
                                                  shuffle=False))
      evals.append({k: float(v) for k, v in res.items()})
    return {'model_type': model_type, 'seed': seed, 'seconds': time.time() - t0, 'evals': evals}


def summary(runs: list[dict]) -> dict:
  out = {}
  for model in sorted({r['model_type'] for r in runs}):
    final = [r['evals'][-1] for r in runs if r['model_type'] == model]
    out[model] = {k: float(np.mean([f[k] for f in final])) for k in ('accuracy', 'auc')}
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--epochs', type=int, default=4)
  parser.add_argument('--epochs_between_evals', type=int, default=2)
  parser.add_argument('--batch_size', type=int, default=40)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--models', nargs='+', default=['wide', 'deep', 'wide_deep'])
  parser.add_argument('--out', default=str(OUT))
  parser.add_argument('--append', action='store_true',
                      help="add these runs to --out's runs instead of replacing them")
  args = parser.parse_args(argv)
  train = read_csv(os.path.join(DATA, 'adult_train.csv'))
  test = read_csv(os.path.join(DATA, 'adult_test.csv'))
  runs = []
  for model_type in args.models:
    for seed in args.seeds:
      runs.append(run(model_type, seed, args.epochs, args.epochs_between_evals, args.batch_size,
                      train, test))
      print(model_type, seed, {k: round(v, 4) for k, v in runs[-1]['evals'][-1].items()},
            flush=True)
  invocations = [vars(args)]
  if args.append and pathlib.Path(args.out).exists():
    old = json.loads(pathlib.Path(args.out).read_text())
    runs = old['runs'] + runs
    invocations = old['invocations'] + invocations
  result = {'jestimator_version': je.__version__, 'invocations': invocations, 'runs': runs,
            'jestimator_mean_final': summary(runs)}
  if TF_JSON.exists():
    tf_runs = json.loads(TF_JSON.read_text())
    result['tf'] = tf_runs
    tf_mean = summary(tf_runs['runs'])
    result['tf_mean_final'] = tf_mean
    result['difference'] = {m: {k: result['jestimator_mean_final'][m][k] - tf_mean[m][k]
                                for k in ('accuracy', 'auc')}
                            for m in result['jestimator_mean_final'] if m in tf_mean}
    print('difference (jestimator - TF):', json.dumps(result['difference']))
  pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
