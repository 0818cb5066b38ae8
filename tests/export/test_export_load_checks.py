"""export.load cross-checks columns.json against the weights (an edited export whose manifest was
recomputed is refused naming the column), refuses a signature.json without inputs, and records no
absolute path of the training machine."""
import json
import os
import shutil

import numpy as np
import pytest

from _export_models import make_raw
from jestimator import export
from jestimator.export import _manifest


def _edited(path, tmp_path, edit_columns=None, edit_signature=None):
  """A copy of the export with columns.json / signature.json edited and the manifest recomputed
  (so only the cross-checks can tell)."""
  out = str(tmp_path / 'edited' / os.path.basename(path))
  shutil.copytree(path, out)
  for name, edit in (('columns.json', edit_columns), ('signature.json', edit_signature)):
    if edit is None:
      continue
    with open(os.path.join(out, name)) as f:
      doc = json.load(f)
    edit(doc)
    with open(os.path.join(out, name), 'w') as f:
      json.dump(doc, f)
  os.remove(os.path.join(out, _manifest.FILE))
  _manifest.write(out)
  return out


def _column(doc, key, kind=None):
  """The (first) column dict of `key` in a columns.json document (nested ones too)."""
  def walk(node):
    if isinstance(node, dict):
      if node.get('key') == key and (kind is None or node.get('column') == kind):
        yield node
      for v in node.values():
        yield from walk(v)
    elif isinstance(node, list):
      for v in node:
        yield from walk(v)
  return next(walk(doc))


def _drop_sizes(doc):  # as an export written before column sizes were recorded
  doc['host_stage'].pop('column_sizes', None)


@pytest.mark.parametrize('size', [0, 1_000_000])
@pytest.mark.parametrize('recorded', [True, False])
def test_a_changed_hash_bucket_size_is_refused_naming_the_column(models, tmp_path, size,
                                                                  recorded):
  _, path = models.get('linear')
  bad = _edited(path, tmp_path, lambda d: _column(d, 'city', 'HashedCategoricalColumn').update(
      hash_bucket_size=size), None if recorded else _drop_sizes)
  # was: loaded and predicted (a divide-by-zero warning at 0, rows past the table dropped)
  with pytest.raises(ValueError, match=r"columns.json does not match the exported weights.*"
                                       r"feature column 'city' has "):
    export.load(bad)


@pytest.mark.parametrize('recorded', [True, False])
def test_a_cut_vocabulary_is_refused_naming_the_column(models, tmp_path, recorded):
  _, path = models.get('linear')
  bad = _edited(path, tmp_path, lambda d: _column(d, 'color').update(vocabulary_list=['red']),
                None if recorded else _drop_sizes)
  match = ('num_buckets=3 but was exported with 5' if recorded else
           r"num_buckets=3 in columns.json but its table 'params/linear/linear_model/color/"
           r"weights' in the weights has shape \[5, 3\]")
  with pytest.raises(ValueError, match=f"feature column 'color' has {match}"):
    export.load(bad)


def test_an_empty_vocabulary_is_refused_naming_the_column(models, tmp_path):
  _, path = models.get('linear')
  bad = _edited(path, tmp_path, lambda d: _column(d, 'color').update(vocabulary_list=[],
                                                                    num_oov_buckets=0))
  with pytest.raises(ValueError, match="feature column 'color' has an empty vocabulary"):
    export.load(bad)  # was: a bare IndexError


def test_embedding_dimension_and_an_indicator_without_a_table_are_checked(models, tmp_path):
  _, path = models.get('dnn')
  bad = _edited(path, tmp_path, lambda d: _column(d, 'city').__setitem__('hash_bucket_size', 31),
                _drop_sizes)
  with pytest.raises(ValueError, match=r"feature column 'city_embedding' has num_buckets=31 and "
                                       r'dimension=3 in columns.json but its table .*\[30, 3\]'):
    export.load(bad)

  def dimension(d):
    next(c for c in d['columns'] if c['column'] == 'EmbeddingColumn')['dimension'] = 4
  with pytest.raises(ValueError, match=r"'city_embedding' has num_buckets=30 and dimension=4"):
    export.load(_edited(path, tmp_path / 'dim', dimension))
  # The indicator's one-hot width is compiled into the program, with no table to compare: the
  # sizes recorded at export time catch it.
  bad = _edited(path, tmp_path / 'ind', lambda d: _column(d, 'color').update(
      vocabulary_list=['red', 'green']))
  with pytest.raises(ValueError, match="feature column 'color' has num_buckets=4 but was "
                                       'exported with 5'):
    export.load(bad)


def test_signature_json_without_inputs_is_a_clear_error(models, tmp_path):
  _, path = models.get('custom')
  bad = _edited(path, tmp_path, edit_signature=lambda d: d.update(inputs={}))
  with pytest.raises(ValueError, match=r"signature.json declares no inputs \(\{\}\)"):
    export.load(bad)  # was: an empty StopIteration


def test_the_export_records_the_checkpoint_relative_to_the_model_dir(models, tmp_path):
  est, path = models.get('linear')
  with open(os.path.join(path, 'signature.json')) as f:
    doc = json.load(f)
  assert 'checkpoint_path' not in doc  # was: the training machine's absolute path
  assert not os.path.isabs(doc['checkpoint'])
  assert os.path.join(est.model_dir, doc['checkpoint']) == est.latest_checkpoint()
  assert est.model_dir not in json.dumps(doc)
  # an export written before (an absolute checkpoint_path, no column sizes) still loads
  def older(d):
    d['checkpoint_path'] = est.latest_checkpoint()
    del d['checkpoint']
    _drop_sizes(d)
  old = export.load(_edited(path, tmp_path, edit_signature=older))
  raw = make_raw(5, seed=3)
  got, want = old.predict(raw), export.load(path).predict(raw)
  assert sorted(got) == sorted(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
