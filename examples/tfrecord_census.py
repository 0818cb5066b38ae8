"""Census income from TFRecord files of tf.train.Examples, without TensorFlow.

Writes the UCI Adult data as GZIP TFRecord shards of serialized `tf.train.Example`s (as a TF
pipeline would have left them), trains a wide linear model from them with
`jestimator.inputs.tfrecord_input_fn` (hash buckets and crosses identical to TF's), evaluates,
exports a parsing signature and scores serialized Examples with the exported artifact.

Run: `python examples/tfrecord_census.py`.
"""
import logging
import os
import tempfile

import numpy as np

import jestimator as je
from jestimator import columns as fc
from jestimator import export
from jestimator import io as jio
from jestimator.canned import classifier_parse_example_spec
from jestimator.datasets import adult

NUMERIC = ('age', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week')
STRINGS = ('workclass', 'education', 'marital_status', 'occupation', 'relationship', 'race',
           'gender', 'native_country')


def write_shards(data: dict, directory: str, name: str, shards: int) -> str:
  """Writes `data` as GZIP TFRecord shards of Examples; returns their glob pattern."""
  features = {k: data[k].astype(np.float32)[:, None] for k in NUMERIC}
  features.update({k: data[k] for k in STRINGS})
  features['label'] = (data['income_bracket'] == '>50K').astype(np.int64)[:, None]
  records = jio.make_examples(features)
  for i, part in enumerate(np.array_split(np.arange(len(records)), shards)):
    jio.write_tfrecord(os.path.join(directory, f'{name}-{i:05d}-of-{shards:05d}.tfrecord.gz'),
                       [records[j] for j in part], compression='GZIP')
  return os.path.join(directory, f'{name}-*.tfrecord.gz')


def feature_columns() -> list:
  age = fc.numeric_column('age')
  age_buckets = fc.bucketized_column(age, [18, 25, 30, 35, 40, 45, 50, 55, 60, 65])
  hashed = {k: fc.categorical_column_with_hash_bucket(k, 1000) for k in STRINGS}
  return [age_buckets, *hashed.values(),
          fc.crossed_column(['education', 'occupation'], 1000),
          fc.crossed_column([age_buckets, 'education', 'occupation'], 1000),
          fc.crossed_column(['native_country', 'occupation'], 1000)]


def main() -> dict:
  logging.basicConfig(level=logging.WARNING, format='%(message)s')
  train, test = adult.load()
  work = tempfile.mkdtemp(prefix='tfrecord_census_')
  train_files = write_shards(train, work, 'train', shards=4)
  test_files = write_shards(test, work, 'test', shards=1)

  cols = feature_columns()
  spec = classifier_parse_example_spec(cols, label_key='label')
  est = je.LinearClassifier(cols, model_dir=os.path.join(work, 'model'),
                            config=je.RunConfig(seed=42, log_step_count_steps=10_000))
  est.train(je.inputs.tfrecord_input_fn(train_files, spec, label_key='label', batch_size=256,
                                        num_epochs=2, compression='GZIP'))
  results = est.evaluate(je.inputs.tfrecord_input_fn(
      test_files, spec, label_key='label', batch_size=1024, shuffle=False, compression='GZIP'))
  print('evaluation on the test shards:')
  for key in ('accuracy', 'auc', 'loss', 'global_step'):
    print(f'  {key:12s} {results[key]:.4f}' if key != 'global_step' else
          f'  {key:12s} {results[key]}')

  # Export a parsing signature: the artifact takes serialized tf.Examples, as TF Serving would.
  serving_input_fn = export.build_parsing_serving_input_fn(fc.make_parse_example_spec(cols))
  path = est.export_saved_model(os.path.join(work, 'export'), serving_input_fn)
  test_file = test_files.replace('*', '00000-of-00001')
  examples = [r for _, r in zip(range(3), jio.tfrecord_iterator(test_file, 'GZIP'))]
  scores = export.load(path).predict(examples, 'predict')['probabilities'][:, 1]
  print('served P(>50K) for three serialized test Examples:', np.round(scores, 3).tolist())
  # the same rows through Estimator.predict, parsed with the training spec
  rows = jio.parse_example(examples, spec)
  rows.pop('label')
  direct = next(est.predict(lambda: iter([rows]), yield_single_examples=False))
  results['served_scores'] = scores
  results['predict_scores'] = direct['probabilities'][:, 1]
  return results


if __name__ == '__main__':
  main()
