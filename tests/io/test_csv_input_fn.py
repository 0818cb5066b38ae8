"""csv_input_fn: TF 2.15 make_csv_dataset's parsed values and dtypes (tests/tf_parity/data/
csv_input.json, written by tests/tf_parity/tf_scripts/csv_input.py), errors naming file, line and
column, exact resumption, sharding, and training an Estimator from CSV."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jestimator as je
from jestimator import io as jio

_DATA = json.load(open(os.path.join(os.path.dirname(__file__), '..', 'tf_parity', 'data',
                                    'csv_input.json')))
_NP = {'int32': np.int32, 'int64': np.int64, 'float32': np.float32, 'float64': np.float64}


def _write(tmp_path, files):
  for name, text in files.items():
    (tmp_path / name).write_text(text)
  return str(tmp_path / '*.csv')


def _check(got, want):
  if want['dtype'] == 'string':
    assert got.dtype == object and got.tolist() == want['values']
  else:
    assert got.dtype == _NP[want['dtype']], (got.dtype, want['dtype'])
    np.testing.assert_array_equal(got, want['values'])


@pytest.mark.parametrize('case', _DATA['cases'], ids=lambda c: c['name'])
def test_batches_match_tf_make_csv_dataset(tmp_path, case):
  pattern = _write(tmp_path, _DATA['files'])
  kwargs = {k: v for k, v in case.items() if k not in ('name', 'batches')}
  it = jio.csv_input_fn(pattern, 3, shuffle=False, num_epochs=1, **kwargs)()
  got = list(it)
  assert len(got) == len(case['batches'])
  for (features, labels), want in zip(got, case['batches']):
    assert sorted(features) == sorted(want['features'])
    for k in features:
      _check(features[k], want['features'][k])
    _check(labels, want['labels'])


def test_errors_name_file_line_and_column(tmp_path):
  assert 'required' in _DATA['errors']['required']  # TF raises for each of these three
  assert 'not a valid int32' in _DATA['errors']['bad_int']
  assert 'Expect 3 fields but have 2' in _DATA['errors']['field_count']
  (tmp_path / 'x.csv').write_text('a,b,c\n1,2,3\n1,,3\n')
  path = str(tmp_path / 'x.csv')
  with pytest.raises(ValueError, match=r"x.csv:3: column 'b' \(field 1\) is required"):
    list(jio.csv_input_fn(path, 8, column_defaults=[[0], [], [0]], num_epochs=1, shuffle=False)())
  with pytest.raises(ValueError, match=r"x.csv:3: column 'b' \(field 1\) is required"):
    list(jio.csv_input_fn(path, 8, column_defaults=[0, np.int32, 0], num_epochs=1)())
  (tmp_path / 'y.csv').write_text('a,b,c\n1,2,3\n1,2.5,3\n')
  with pytest.raises(ValueError, match=r"y.csv:3: column 'b' \(field 1\): '2.5' is not a valid "
                                       'int32'):
    list(jio.csv_input_fn(str(tmp_path / 'y.csv'), 8, column_defaults=[0, 0, 0], num_epochs=1)())
  (tmp_path / 'z.csv').write_text('a,b,c\n1,2,3\n1,2\n')
  with pytest.raises(ValueError, match=r'z.csv:3: expected 3 fields, got 2'):
    list(jio.csv_input_fn(str(tmp_path / 'z.csv'), 8, num_epochs=1)())
  with pytest.raises(ValueError, match="label_name 'nope'"):
    jio.csv_input_fn(path, 8, label_name='nope')
  with pytest.raises(ValueError, match='column_defaults has 2 entries for 3'):
    jio.csv_input_fn(path, 8, column_defaults=[0, 0])
  with pytest.raises(ValueError, match='no file matches'):
    jio.csv_input_fn(str(tmp_path / 'none-*.csv'), 8)


def _big(tmp_path, n_files=3, rows=37):
  rng = np.random.default_rng(0)
  for f in range(n_files):
    lines = ['x,k,y'] + [f'{f * 1000 + i},{rng.choice(["a", "b"])},{i % 2}' for i in range(rows)]
    (tmp_path / f'part-{f}.csv').write_text('\n'.join(lines) + '\n')
  return str(tmp_path / 'part-*.csv')


def test_get_state_set_state_resume_at_every_batch(tmp_path):
  fn = jio.csv_input_fn(_big(tmp_path), 5, label_name='y', num_epochs=2, shuffle=True,
                        shuffle_buffer_size=7, shuffle_seed=3)
  it = fn()
  batches, states = [], [it.get_state()]
  for features, _ in it:
    batches.append(features['x'])
    states.append(json.loads(json.dumps(it.get_state())))
  xs = np.concatenate(batches)
  assert len(xs) == 2 * 3 * 37 and sorted(xs[:111]) == sorted(xs[111:])
  assert not np.array_equal(xs[:111], np.sort(xs[:111]))  # shuffled
  for k in (0, 1, 9, len(batches) - 1):
    again = fn()
    again.set_state(states[k])
    np.testing.assert_array_equal(np.concatenate([f['x'] for f, _ in again]),
                                  np.concatenate(batches[k:]))


@pytest.mark.parametrize('n_files,n_pipelines', [(3, 2), (1, 3)])
def test_input_context_shards_are_disjoint_and_cover_everything(tmp_path, n_files, n_pipelines):
  fn = jio.csv_input_fn(_big(tmp_path, n_files), 4, label_name='y', num_epochs=1)
  seen = []
  for i in range(n_pipelines):
    ctx = je.InputContext(num_input_pipelines=n_pipelines, input_pipeline_id=i)
    seen.append(np.concatenate([f['x'] for f, _ in fn(None, ctx)]))
  allx = np.concatenate(seen)
  assert len(allx) == len(set(allx.tolist())) == n_files * 37


def test_trains_an_estimator_and_resumes(tmp_path):
  pattern = _big(tmp_path)
  cols = [je.columns.numeric_column('x'),
          je.columns.categorical_column_with_vocabulary_list('k', ['a', 'b'])]
  est = je.LinearClassifier(cols, model_dir=str(tmp_path / 'm'))
  fn = je.inputs.csv_input_fn(pattern, 16, column_defaults=[0.0, '', 0], label_name='y')
  est.train(fn, max_steps=3)
  est.train(fn, max_steps=6)
  assert est.get_variable_value('global_step') == 6
  metrics = est.evaluate(je.inputs.csv_input_fn(pattern, 16, column_defaults=[0.0, '', 0],
                                                label_name='y', num_epochs=1, shuffle=False))
  assert metrics['global_step'] == 6
