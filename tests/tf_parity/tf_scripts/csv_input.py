"""Writes ../data/csv_input.json: what TF 2.15's make_csv_dataset (shuffle off) and decode_csv
give for small CSV files (held in the JSON as text), so tests/io/test_csv_input_fn.py checks
csv_input_fn's dtypes, defaults, inference and errors against TF.

  <tfvenv>/bin/python tests/tf_parity/tf_scripts/csv_input.py
"""
import json
import os
import tempfile

import tensorflow as tf

FILES = {
    'a.csv': 'age,job,hours,income\n39,tech,40.5,1\n50,,13,0\n38,sales,,0\n53,admin,40,1\n',
    'b.csv': 'age,job,hours,income\n28,tech,40,0\n37,sales,NA,1',
}
CASES = [
    {'name': 'defaults', 'column_defaults': [[0], ['none'], [-1.0], [0]], 'label_name': 'income',
     'na_value': 'NA'},
    {'name': 'inferred', 'column_defaults': None, 'label_name': 'income', 'na_value': 'NA'},
    {'name': 'select', 'column_defaults': [[0.0], [0]], 'select_columns': ['age', 'income'],
     'label_name': 'income', 'na_value': ''},
]


def _jsonable(v):
  v = v.numpy()
  if v.dtype == object:
    return {'dtype': 'string', 'values': [x.decode() for x in v.tolist()]}
  return {'dtype': str(v.dtype), 'values': v.tolist()}


tmp = tempfile.mkdtemp()
for name, text in FILES.items():
  open(os.path.join(tmp, name), 'w').write(text)
out = []
for case in CASES:
  kwargs = {k: v for k, v in case.items() if k != 'name'}
  ds = tf.data.experimental.make_csv_dataset(
      [os.path.join(tmp, n) for n in sorted(FILES)], batch_size=3, shuffle=False, num_epochs=1,
      **kwargs)
  batches = []
  for features, labels in ds:
    batches.append({'features': {k: _jsonable(v) for k, v in features.items()},
                    'labels': _jsonable(labels)})
  out.append({**case, 'batches': batches})

# decode_csv errors: a required column ([] default) with an empty field; a bad int; wrong count.
errors = {}
for label, line, defaults in (('required', '1,,3', [[0], tf.constant([], tf.int32), [0]]),
                              ('bad_int', '1,2.5,3', [[0], [0], [0]]),
                              ('field_count', '1,2', [[0], [0], [0]])):
  try:
    tf.io.decode_csv(line, defaults)
    errors[label] = None
  except tf.errors.InvalidArgumentError as e:
    errors[label] = e.message
json.dump({'tf_version': tf.__version__, 'files': FILES, 'cases': out, 'errors': errors},
          open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                            'csv_input.json'), 'w'), indent=1)
print(json.dumps(out, indent=None)[:1500])
print(errors)
