"""TF 2.15's side of the census r1 comparison: tensorflow/models `official/r1/wide_deep` on the
bundled Adult data with `tf.compat.v1.estimator` (v1 canned estimators, as the r1 program).

The columns, hidden units, batch size, shuffle buffer, CSV defaults and label rule are the r1
program's (`census_dataset.py`, `census_main.py`); the data is /work/shared/data/adult (the same
rows as `jestimator.datasets.adult`), whose CSV files have a header line (skipped here).

Run: /work/tfvenv/bin/python tests/tf_parity/tf_scripts/census_r1_tf.py [--epochs 4] [--seeds 0 1 2]
     [--models deep wide_deep] [--append]
Writes tests/tf_parity/data/census_r1_tf.json. `benchmarks/census_r1.py` runs jestimator's port.
"""
import argparse
import json
import os
import tempfile
import time

import tensorflow as tf

DATA = os.environ.get('ADULT_DIR', '/work/shared/data/adult')
OUT = os.path.join(os.path.dirname(__file__), '..', 'data', 'census_r1_tf.json')
CSV_COLUMNS = ['age', 'workclass', 'fnlwgt', 'education', 'education_num', 'marital_status',
               'occupation', 'relationship', 'race', 'gender', 'capital_gain', 'capital_loss',
               'hours_per_week', 'native_country', 'income_bracket']
CSV_DEFAULTS = [[0], [''], [0], [''], [0], [''], [''], [''], [''], [''], [0], [0], [0], [''], ['']]
HASH_BUCKET_SIZE = 1000
NUM_TRAIN = 32561


def build_model_columns():
  fc = tf.feature_column
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


def input_fn(data_file, num_epochs, shuffle, batch_size, seed):
  def parse_csv(value):
    columns = tf.io.decode_csv(value, record_defaults=CSV_DEFAULTS)
    features = dict(zip(CSV_COLUMNS, columns))
    labels = features.pop('income_bracket')
    return features, tf.equal(labels, '>50K')
  dataset = tf.data.TextLineDataset(data_file).skip(1)  # the bundled CSV has a header line
  if shuffle:
    dataset = dataset.shuffle(buffer_size=NUM_TRAIN, seed=seed)
  dataset = dataset.map(parse_csv, num_parallel_calls=5)
  return dataset.repeat(num_epochs).batch(batch_size)


def build_estimator(model_dir, model_type, seed):
  wide_columns, deep_columns = build_model_columns()
  hidden_units = [100, 75, 50, 25]
  config = tf.estimator.RunConfig(tf_random_seed=seed, log_step_count_steps=None,
                                  save_summary_steps=10**9)
  v1 = tf.compat.v1.estimator
  if model_type == 'wide':
    return v1.LinearClassifier(model_dir=model_dir, feature_columns=wide_columns, config=config)
  if model_type == 'deep':
    return v1.DNNClassifier(model_dir=model_dir, feature_columns=deep_columns,
                            hidden_units=hidden_units, config=config)
  return v1.DNNLinearCombinedClassifier(model_dir=model_dir, linear_feature_columns=wide_columns,
                                        dnn_feature_columns=deep_columns,
                                        dnn_hidden_units=hidden_units, config=config)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--epochs', type=int, default=4)
  parser.add_argument('--epochs_between_evals', type=int, default=2)
  parser.add_argument('--batch_size', type=int, default=40)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0])
  parser.add_argument('--models', nargs='+', default=['wide', 'deep', 'wide_deep'])
  parser.add_argument('--append', action='store_true',
                      help='add these runs to the existing JSON instead of replacing it')
  args = parser.parse_args()
  train = os.path.join(DATA, 'adult_train.csv')
  test = os.path.join(DATA, 'adult_test.csv')
  runs = []
  invocations = [vars(args)]
  for model_type in args.models:
    for seed in args.seeds:
      with tempfile.TemporaryDirectory() as model_dir:
        est = build_estimator(model_dir, model_type, seed)
        t0 = time.time()
        evals = []
        for _ in range(args.epochs // args.epochs_between_evals):
          est.train(lambda: input_fn(train, args.epochs_between_evals, True, args.batch_size,
                                     seed))
          res = est.evaluate(lambda: input_fn(test, 1, False, args.batch_size, seed))
          evals.append({k: float(v) for k, v in res.items()})
        runs.append({'model_type': model_type, 'seed': seed, 'seconds': time.time() - t0,
                     'evals': evals})
        print(model_type, seed, {k: round(v, 4) for k, v in evals[-1].items()}, flush=True)
  if args.append and os.path.exists(OUT):
    with open(OUT) as f:
      old = json.load(f)
    runs = old['runs'] + runs
    invocations = old.get('invocations', [old['args']]) + [vars(args)]
  out = {'tf_version': tf.__version__, 'program': 'tensorflow/models official/r1/wide_deep '
         '(census_main.py, census_dataset.py) with tf.compat.v1.estimator',
         'data': 'bundled Adult (train 32561 rows, test 16281 rows)', 'invocations': invocations,
         'runs': runs}
  with open(OUT, 'w') as f:
    json.dump(out, f, indent=1)


if __name__ == '__main__':
  main()
