"""Wide & deep on the UCI Adult census data: the classic tf.estimator tutorial, on JAX.

Run with `make demo`. Reads raw string columns, lets `columns.analyze` learn vocabularies and
z-score statistics, trains a `DNNLinearCombinedClassifier` for 2 epochs, evaluates, predicts,
then exports the model and scores raw rows with the exported artifact.

The model_dir is a temporary folder removed at the end; `python census_wide_and_deep.py DIR`
trains in DIR and keeps it (to open it with TensorBoard, or serve its export).
"""
import atexit
import logging
import shutil
import sys
import tempfile

import jestimator as je
from jestimator import columns as fc
from jestimator.datasets import adult

logging.basicConfig(level=logging.WARNING, format='%(message)s')
# jestimator's progress (one redrawn line on a terminal, log lines otherwise) and checkpoint notes.
je.logging.set_verbosity(logging.INFO)

train, test = adult.load()
train_labels, test_labels = train.pop('income_bracket'), test.pop('income_bracket')

# -- Feature columns: declared once, used by training, evaluation and serving alike. -----------
numeric = [fc.numeric_column(k, normalizer='zscore')
           for k in ('age', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week')]
vocab = {k: fc.categorical_column_with_vocabulary_list(k, None)  # vocabulary learned by analyze
         for k in ('gender', 'education', 'marital_status', 'relationship', 'workclass', 'race')}
occupation = fc.categorical_column_with_hash_bucket('occupation', hash_bucket_size=1000)
country = fc.categorical_column_with_hash_bucket('native_country', hash_bucket_size=1000)
age_buckets = fc.bucketized_column(fc.numeric_column('age'),
                                   boundaries=[18, 25, 30, 35, 40, 45, 50, 55, 60, 65])

wide = [*vocab.values(), occupation, country, age_buckets,
        fc.crossed_column(['education', 'occupation'], hash_bucket_size=1000),
        fc.crossed_column([age_buckets, 'education', 'occupation'], hash_bucket_size=1000)]
deep = [*numeric,
        *(fc.indicator_column(vocab[k]) for k in ('workclass', 'education', 'gender',
                                                    'relationship')),
        fc.embedding_column(country, dimension=8), fc.embedding_column(occupation, dimension=8)]

# analyze() fills what needs the data (vocabularies, means and stds) and returns new columns.
wide, deep = fc.analyze(wide, train), fc.analyze(deep, train)

# -- Train and evaluate. ------------------------------------------------------------------------
if len(sys.argv) > 1:
  model_dir = sys.argv[1]
else:
  model_dir = tempfile.mkdtemp(prefix='census_')
  atexit.register(shutil.rmtree, model_dir, ignore_errors=True)
  print(f'model_dir: {model_dir} (temporary, removed at the end; pass a folder to keep it)')
estimator = je.DNNLinearCombinedClassifier(
    model_dir=model_dir, linear_feature_columns=wide, dnn_feature_columns=deep,
    dnn_hidden_units=[100, 50], label_vocabulary=list(adult.LABEL_VOCABULARY),
    config=je.RunConfig(seed=42))

estimator.train(je.inputs.numpy_input_fn(train, train_labels, batch_size=256, num_epochs=2,
                                         shuffle=True, seed=0))
results = estimator.evaluate(je.inputs.numpy_input_fn(test, test_labels, batch_size=1024,
                                                      shuffle=False))
print(f'\nEvaluation on the test split (global step {results["global_step"]}):')
for key, value in sorted(results.items()):
  print(f'  {key:28s} {value:.4f}' if isinstance(value, float) else f'  {key:28s} {value}')

# -- Predict a few rows. -------------------------------------------------------------------------
few = {k: v[:4] for k, v in test.items()}
print('\nPredictions for the first test rows:')
for row, pred in enumerate(estimator.predict(je.inputs.numpy_input_fn(few, shuffle=False))):
  print(f'  row {row}: class {pred["classes"][0].decode():6s} P(>50K) = '
        f'{pred["probabilities"][1]:.3f}   (true: {test_labels[row]})')

# -- Export, load back without the model code, and score raw rows. ------------------------------
if hasattr(estimator, 'export_saved_model'):
  from jestimator import export
  path = estimator.export_saved_model(f'{model_dir}/export')
  served = export.load(path)
  raw = {k: v[4:6] for k, v in test.items()}
  scores = served.predict(raw, signature='predict')
  print(f'\nExported to {path}; served P(>50K) for two raw rows: '
        + ', '.join(f'{p:.3f}' for p in scores['probabilities'][:, 1]))
