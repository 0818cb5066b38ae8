"""tfrecord_input_fn: same training as numpy, exact resumption (also in a new process), shuffling,
sharding by InputContext, finite epochs and errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import _models
import jestimator as je
from jestimator import io as jio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _tfrecord_train as tr  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_tfrecord_train.py')


def ids_of(batches) -> list[list[int]]:
  return [f['id'][:, 0].tolist() for f in batches]


def id_files(tmp_path, n=250, n_files=3, compression=None) -> str:
  records = jio.make_examples({'id': np.arange(n)[:, None], 'x': np.arange(n, dtype=np.float32)})
  for i, part in enumerate(np.array_split(np.arange(n), n_files)):
    jio.write_tfrecord(str(tmp_path / f'ids-{i}.tfrecord'), [records[j] for j in part],
                       compression)
  return str(tmp_path / 'ids-*.tfrecord')


SPEC = {'id': jio.FixedLenFeature([1], 'int64'), 'x': jio.VarLenFeature('float32')}


def test_trains_exactly_as_numpy_input_fn_on_the_same_rows(tmp_path):
  pattern = tr.write_files(str(tmp_path), 600, 2)
  x, y = tr.adult_rows(600)
  from_files = tr.estimator(str(tmp_path / 'files'))
  from_files.train(tr.input_fn(pattern, num_epochs=2, shuffle=False))
  from_numpy = tr.estimator(str(tmp_path / 'numpy'))
  from_numpy.train(je.inputs.numpy_input_fn(x, y, batch_size=32, num_epochs=2, shuffle=False))
  a, b = _models.checkpoint_params(from_files), _models.checkpoint_params(from_numpy)
  assert sorted(a) == sorted(b) and int(a['global_step']) == 38  # ceil(1200 / 32)
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
  on_files = from_files.evaluate(tr.input_fn(pattern, num_epochs=1, shuffle=False,
                                             batch_size=256))
  on_numpy = from_numpy.evaluate(je.inputs.numpy_input_fn(x, y, batch_size=256, shuffle=False))
  assert on_files['accuracy'] == pytest.approx(on_numpy['accuracy'], abs=1e-6)
  assert on_files['accuracy'] > 0.76  # better than the majority class (0.75) on these rows


@pytest.mark.slow
def test_resumes_exactly_mid_file_in_a_new_process(tmp_path):
  pattern = tr.write_files(str(tmp_path), 900, 3)  # 300 records a file, windows of 150
  one = tr.estimator(str(tmp_path / 'one'))
  one.train(tr.input_fn(pattern), max_steps=23)
  split = tr.estimator(str(tmp_path / 'split'))
  split.train(tr.input_fn(pattern), max_steps=11)  # stops mid-window, mid-file
  out = subprocess.run([sys.executable, SCRIPT, json.dumps(
      {'model_dir': str(tmp_path / 'split'), 'pattern': pattern, 'max_steps': 23})],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads(out.stdout.strip().splitlines()[-1]) == {'global_step': 23}
  a = _models.checkpoint_params(one)
  b = _models.checkpoint_params(tr.estimator(str(tmp_path / 'split')))
  assert _models.tree_equal(a, b)
  # the test can tell: restarting the input from its beginning at step 11 ends elsewhere
  restart = tr.estimator(str(tmp_path / 'restart'))
  restart.train(tr.input_fn(pattern), max_steps=11)
  fresh = tr.input_fn(pattern)
  restart.train(lambda config: (b for b in fresh(config)), max_steps=23)  # same order, from start
  assert not _models.tree_equal(a, _models.checkpoint_params(restart))


@pytest.mark.parametrize('compression', [None, 'GZIP'])
def test_get_state_set_state_resume_at_every_batch(tmp_path, compression):
  fn = jio.tfrecord_input_fn(id_files(tmp_path, compression=compression), SPEC, batch_size=16,
                             num_epochs=3, shuffle=True, seed=5, shuffle_buffer_size=30,
                             compression=compression)
  it = fn()
  batches, states = [], [it.get_state()]
  for features in it:
    batches.append(features['id'][:, 0].tolist())
    states.append(json.loads(json.dumps(it.get_state())))  # JSON round trip, as checkpoints do
  assert len(batches) == 47 and len(batches[-1]) == 750 - 46 * 16  # one short batch at the end
  for k in (0, 1, 7, 15, 16, 30, 46):
    again = fn()
    again.set_state(states[k])
    assert [f['id'][:, 0].tolist() for f in again] == batches[k:], k
  assert it.at_end()
  finished = fn()
  finished.set_state(states[-1])
  assert finished.at_end() and list(finished) == []


def test_shuffle_is_a_seeded_permutation_per_epoch(tmp_path):
  pattern = id_files(tmp_path)
  epoch = lambda seed: sum(ids_of(jio.tfrecord_input_fn(pattern, SPEC, batch_size=50, seed=seed,
                                                        shuffle_buffer_size=40)()), [])
  a, b, c = epoch(1), epoch(1), epoch(2)
  assert sorted(a) == list(range(250)) and a == b and a != c and a != sorted(a)
  plain = sum(ids_of(jio.tfrecord_input_fn(pattern, SPEC, batch_size=64, shuffle=False)()), [])
  assert plain == list(range(250))
  two = sum(ids_of(jio.tfrecord_input_fn(pattern, SPEC, batch_size=50, seed=1, num_epochs=2,
                                         shuffle_buffer_size=40)()), [])
  assert two[:250] == a and sorted(two[250:]) == list(range(250)) and two[250:] != a


@pytest.mark.parametrize('n_files,n_pipelines', [(4, 2), (3, 3), (2, 3), (1, 4)])
def test_input_context_shards_are_disjoint_and_cover_everything(tmp_path, n_files, n_pipelines):
  pattern = id_files(tmp_path, n=101, n_files=n_files)
  fn = jio.tfrecord_input_fn(pattern, SPEC, batch_size=8, shuffle=True, seed=3)
  shards = []
  for i in range(n_pipelines):
    ctx = je.InputContext(num_input_pipelines=n_pipelines, input_pipeline_id=i)
    shards.append(sum(ids_of(je.inputs.call_input_fn(fn, 'train', None, None, ctx)), []))
  assert sorted(sum(shards, [])) == list(range(101))
  assert all(len(s) > 0 for s in shards)
  if n_files >= n_pipelines:  # FILE policy: each process reads whole files of its own
    bounds = [part[0] for part in np.array_split(np.arange(101), n_files)]
    file_of = lambda r: int(np.searchsorted(bounds, r, side='right')) - 1
    assert all(len({file_of(r) for r in s} & {file_of(r) for r in t}) == 0
               for s in shards for t in shards if s is not t)


def test_parsed_batches_and_predict_mode(tmp_path):
  pattern = id_files(tmp_path, n=20, n_files=1)
  fn = jio.tfrecord_input_fn(pattern, SPEC, label_key='id', batch_size=8, shuffle=False)
  features, labels = next(iter(fn()))
  assert labels[:, 0].tolist() == list(range(8)) and list(features) == ['x']
  assert [v.tolist() for v in features['x']] == [[float(i)] for i in range(8)]
  only = next(iter(jio.tfrecord_input_fn(pattern, SPEC, batch_size=8, shuffle=False)()))
  assert isinstance(only, dict) and sorted(only) == ['id', 'x']
  assert je.inputs.tfrecord_input_fn is jio.tfrecord_input_fn


def test_errors(tmp_path):
  pattern = id_files(tmp_path, n=20, n_files=1)
  with pytest.raises(ValueError, match=r"no file matches '.*nothing-\*'"):
    jio.tfrecord_input_fn(str(tmp_path / 'nothing-*'), SPEC)
  with pytest.raises(ValueError, match=r"label_key 'label' is not in the parse spec.*"
                                       'classifier_parse_example_spec'):
    jio.tfrecord_input_fn(pattern, SPEC, label_key='label')
  with pytest.raises(ValueError, match='batch_size must be a positive int'):
    jio.tfrecord_input_fn(pattern, SPEC, batch_size=0)
  with pytest.raises(ValueError, match='num_epochs must be None or a positive int'):
    jio.tfrecord_input_fn(pattern, SPEC, num_epochs=0)
  with pytest.raises(TypeError, match='features must be a parse spec'):
    jio.tfrecord_input_fn(pattern, ['age'])
  other = jio.tfrecord_input_fn(pattern, SPEC, batch_size=4)()
  with pytest.raises(ValueError, match='different input_fn'):
    jio.tfrecord_input_fn(pattern, SPEC, batch_size=8)().set_state(other.get_state())
  empty = tmp_path / 'empty.tfrecord'
  jio.write_tfrecord(str(empty), [])
  with pytest.raises(ValueError, match='hold no records'):
    next(iter(jio.tfrecord_input_fn(str(empty), SPEC, num_epochs=None)()))
  assert list(jio.tfrecord_input_fn(str(empty), SPEC)()) == []


def test_records_are_parsed_off_the_training_thread(tmp_path, monkeypatch):
  import threading
  from jestimator.io import parsing
  pattern = tr.write_files(str(tmp_path), 64, 1)
  threads = []
  real = parsing.parse_example

  def spy(serialized, features):
    threads.append(threading.current_thread().name)
    return real(serialized, features)

  monkeypatch.setattr(parsing, 'parse_example', spy)
  tr.estimator(str(tmp_path / 'm')).train(tr.input_fn(pattern, num_epochs=1), max_steps=2)
  assert threads and threading.main_thread().name not in threads, threads


def test_one_train_call_per_epoch_loop_trains_an_epoch_each_call_as_numpy(tmp_path):
  # TF's usual loop `for _ in range(E): est.train(input_fn)` with num_epochs=1 re-runs input_fn
  # each call; the position restored at the end of the finite input starts a fresh pass, as with
  # numpy_input_fn (was: the first epoch, then "input_fn yielded no batches").
  pattern = tr.write_files(str(tmp_path), 100, 2)
  x, y = tr.adult_rows(100)
  from_files = tr.estimator(str(tmp_path / 'files'))
  from_numpy = tr.estimator(str(tmp_path / 'numpy'))
  files_fn = tr.input_fn(pattern, num_epochs=1, shuffle=False)
  numpy_fn = je.inputs.numpy_input_fn(x, y, batch_size=32, num_epochs=1, shuffle=False)
  for epoch in range(1, 4):
    from_files.train(files_fn)
    from_numpy.train(numpy_fn)
    assert from_files.get_variable_value('global_step') == 4 * epoch  # ceil(100 / 32) a call
    assert from_numpy.get_variable_value('global_step') == 4 * epoch
  a, b = _models.checkpoint_params(from_files), _models.checkpoint_params(from_numpy)
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
