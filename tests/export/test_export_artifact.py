"""The export folder: layout, contents, atomicity, numbers against numpy, and clear errors."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

import jestimator as je
from _export_models import CUSTOM_SPEC, make_raw
from jestimator import export
from jestimator.canned import dnn
from jestimator import columns as fc
from jestimator.serving import tensors


@pytest.fixture(scope='module')
def custom(models):
  return models.get('custom')


def _checkpoint_variables(est):
  from jestimator.checkpoints import Checkpointer
  ckpt = Checkpointer(est.model_dir, read_only=True)
  return ckpt.restore_raw_variables(ckpt.latest_step())


def test_layout_and_signature_json(custom):
  est, path = custom
  assert os.path.basename(path).isdigit()
  assert os.path.dirname(path) == os.path.join(est.model_dir, 'export')
  files = sorted(os.path.relpath(os.path.join(d, f), path)
                 for d, _, fs in os.walk(path) for f in fs)
  assert files == ['functions/00_serving_default.jaxexport', 'manifest.json', 'signature.json',
                   'variables.safetensors']
  assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith('.tmp')]
  with open(os.path.join(path, 'signature.json')) as f:
    doc = json.load(f)
  assert doc['format'] == 'jestimator.export' and doc['format_version'] == export.FORMAT_VERSION
  assert doc['global_step'] == 20 and doc['platforms'] == ['cpu']
  assert doc['inputs'] == {'x': {'dtype': 'float32', 'shape': [4], 'multivalent': False}}
  assert doc['device_inputs'] == {'x': {'dtype': 'float32', 'shape': [-1, 4], 'dims': ['b', None],
                                        'pads': {}}}
  sig = doc['signatures']['serving_default']
  assert sig['method_name'] == 'tensorflow/serving/predict'
  assert sig['outputs'] == {'logits': {'dtype': 'float32', 'shape': [-1]},
                            'probability': {'dtype': 'float32', 'shape': [-1]}}


def test_variables_are_stored_apart_from_the_program(custom):
  est, path = custom
  stored = tensors.read(os.path.join(path, 'variables.safetensors'))
  saved = _checkpoint_variables(est)
  assert set(stored) == set(saved)
  for name in saved:
    np.testing.assert_array_equal(stored[name], saved[name])
  with open(os.path.join(path, 'functions/00_serving_default.jaxexport'), 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  # The program takes every variable as an input (weights are not baked into it) and a batch of
  # symbolic size.
  assert len(exported.in_avals) == len(stored) + 1
  assert any(str(a.shape[0]) == 'b' for a in exported.in_avals if a.shape)


def _numpy_forward(v, x):
  """The custom model_fn (Dense-relu-BatchNorm-Dense) in float64 numpy, from the variables."""
  p = lambda name: v[name].astype(np.float64)
  h = np.maximum(x @ p('params/Dense_0/kernel') + p('params/Dense_0/bias'), 0)
  h = (h - p('batch_stats/BatchNorm_0/mean')) / np.sqrt(p('batch_stats/BatchNorm_0/var') + 1e-5)
  h = h * p('params/BatchNorm_0/scale') + p('params/BatchNorm_0/bias')
  logits = (h @ p('params/Dense_1/kernel') + p('params/Dense_1/bias'))[:, 0]
  return logits, 1 / (1 + np.exp(-logits))


def test_predictions_match_numpy_at_any_batch_size(custom):
  est, path = custom
  model = export.load(path)
  v = _checkpoint_variables(est)
  x = make_raw(300, seed=5)['x']
  for n in (1, 3, 300):
    out = model.predict({'x': x[:n]})
    logits, prob = _numpy_forward(v, x[:n].astype(np.float64))
    np.testing.assert_allclose(out['logits'], logits, atol=1e-5)
    np.testing.assert_allclose(out['probability'], prob, atol=1e-6)
    assert out['logits'].shape == (n,)
  # Lists work as well as arrays; extra features are ignored.
  out = model.predict({'x': x[:2].tolist(), 'unused': ['a', 'b']})
  np.testing.assert_allclose(out['logits'], _numpy_forward(v, x[:2].astype(np.float64))[0],
                             atol=1e-5)


def test_exports_are_kept_and_versions_increase(custom, tmp_path):
  est, _ = custom
  fn = export.build_raw_serving_input_fn(CUSTOM_SPEC)
  first = est.export_saved_model(str(tmp_path), fn)
  second = est.export_saved_model(str(tmp_path), fn, platforms=('cpu', 'cuda'))
  assert int(os.path.basename(second)) > int(os.path.basename(first))
  assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(first),
                                                 os.path.basename(second)])
  assert export.latest_export(str(tmp_path)) == second
  with open(os.path.join(second, 'signature.json')) as f:
    assert json.load(f)['platforms'] == ['cpu', 'cuda']
  x = make_raw(3, seed=2)['x']  # the multi-platform program runs here too
  np.testing.assert_array_equal(export.load(second).predict({'x': x})['logits'],
                                export.load(first).predict({'x': x})['logits'])


def test_checkpoint_path_selects_the_step(custom, tmp_path):
  est, _ = custom
  ckpt = est.latest_checkpoint()
  path = est.export_saved_model(str(tmp_path), export.build_raw_serving_input_fn(CUSTOM_SPEC),
                                checkpoint_path=ckpt)
  assert export.load(path).global_step == int(os.path.basename(ckpt))
  with pytest.raises(ValueError, match='not a checkpoint path'):
    est.export_saved_model(str(tmp_path), export.build_raw_serving_input_fn(CUSTOM_SPEC),
                           checkpoint_path=str(tmp_path))


def test_predict_errors_name_the_feature(custom):
  model = export.load(custom[1])
  x = np.zeros((2, 4), np.float32)
  with pytest.raises(ValueError, match=r"missing feature\(s\) \['x'\]"):
    model.predict({'y': x})
  with pytest.raises(TypeError, match="feature 'x' must hold float32 numbers"):
    model.predict({'x': [['a'] * 4]})
  with pytest.raises(ValueError, match=r"feature 'x' must have shape \[batch, 4\]"):
    model.predict({'x': np.zeros((2, 3))})
  with pytest.raises(ValueError, match="no signature 'classification'"):
    model.predict({'x': x}, 'classification')
  with pytest.raises(TypeError, match='must be a dict'):
    model.predict(x)


def test_export_errors(custom, tmp_path):
  est, _ = custom
  fresh = je.Estimator(est.model_fn, str(tmp_path / 'empty'))
  fn = export.build_raw_serving_input_fn(CUSTOM_SPEC)
  with pytest.raises(ValueError, match="Couldn't find trained model.*checkpoint"):
    fresh.export_saved_model(str(tmp_path / 'e'), fn)
  with pytest.raises(ValueError, match='build_raw_serving_input_fn'):
    est.export_saved_model(str(tmp_path / 'e'))
  with pytest.raises(ValueError, match='platforms'):
    est.export_saved_model(str(tmp_path / 'e'), fn, platforms=('gpu-ish',))
  with pytest.raises(ValueError, match="feature 'x'.*shape"):
    export.build_raw_serving_input_fn({'x': ('float32', [None])})
  with pytest.raises(TypeError, match="feature 'x'.*dtype"):
    export.build_raw_serving_input_fn({'x': ('complex64', [2])})
  cols = [fc.numeric_column('age'), fc.indicator_column(
      fc.categorical_column_with_vocabulary_list('color', ['a', 'b']))]
  canned = dnn.DNNClassifier([4], cols, model_dir=str(tmp_path / 'dnn'))
  with pytest.raises(ValueError, match=r"does not provide feature\(s\) \['color'\]"):
    canned.export_saved_model(str(tmp_path / 'e'), export.build_raw_serving_input_fn(
        {'age': ('float32', [1])}))
  assert not os.path.exists(tmp_path / 'e')  # validated before touching the disk


def test_load_errors(custom, tmp_path):
  _, path = custom
  with pytest.raises(ValueError, match='not a jestimator export'):
    export.load(str(tmp_path))
  with pytest.raises(ValueError, match='holds exports.*latest_export'):
    export.load(os.path.dirname(path))
  newer = str(tmp_path / '123')
  shutil.copytree(path, newer)
  with open(os.path.join(newer, 'signature.json')) as f:
    doc = json.load(f)
  doc['format_version'] = export.FORMAT_VERSION + 1
  with open(os.path.join(newer, 'signature.json'), 'w') as f:
    json.dump(doc, f)
  with pytest.raises(ValueError, match='newer than this jestimator reads'):
    export.load(newer)
  doc['format_version'] = export.FORMAT_VERSION
  doc['platforms'] = ['cuda']
  with open(os.path.join(newer, 'signature.json'), 'w') as f:
    json.dump(doc, f)
  with pytest.raises(ValueError, match=r"exported for \['cuda'\] but this process runs on cpu"):
    export.load(newer)


def _sequence_model_fn(features, labels, mode):
  """Sequences (numbers and words) and a multi-hot `tags` feature, through feature columns."""
  import flax.linen as nn
  import jax.numpy as jnp
  import optax
  x, n = fc.SequenceFeatures(_SEQ_COLS)(features)
  tags = fc.DenseFeatures([fc.embedding_column(_TAGS, 2)])(features)
  h = jnp.sum(nn.Dense(4)(x), axis=1) / jnp.maximum(n[:, None], 1)
  logits = nn.Dense(1)(jnp.concatenate([h, tags], -1))[:, 0]
  if mode == je.ModeKeys.PREDICT:
    return je.EstimatorSpec(mode, predictions={'logits': logits})
  return je.EstimatorSpec(mode, loss=jnp.mean((logits - labels) ** 2), optimizer=optax.sgd(0.1))


_SEQ_COLS = [fc.sequence_numeric_column('s'), fc.embedding_column(
    fc.sequence_categorical_column_with_vocabulary_list('w', ['a', 'b', 'c']), 3)]
_TAGS = fc.categorical_column_with_hash_bucket('tags', 20)


def _ragged(n, seed):
  rng = np.random.default_rng(seed)
  s, w, t = (np.empty(n, object) for _ in range(3))
  for i in range(n):
    length = int(rng.integers(1, 7))
    s[i] = rng.normal(size=length).tolist()
    w[i] = rng.choice(['a', 'b', 'c', 'unseen'], length).tolist()
    t[i] = rng.choice(['x', 'y', 'q'], int(rng.integers(1, 4))).tolist()
  return {'s': s, 'w': w, 'tags': t}


def test_variable_length_features(tmp_path):
  """Sequences and multi-valued features get symbolic widths; any lengths serve as in training."""
  est = je.Estimator(_sequence_model_fn, str(tmp_path), feature_columns=_SEQ_COLS + [_TAGS],
                     config=je.RunConfig(seed=0, log_step_count_steps=1000))
  y = np.random.default_rng(0).normal(size=32).astype(np.float32)
  est.train(lambda: iter([(_ragged(32, 0), y)] * 3), max_steps=3)
  path = est.export_saved_model(str(tmp_path / 'export'))
  with open(os.path.join(path, 'signature.json')) as f:
    doc = json.load(f)
  assert doc['inputs']['s']['multivalent'] and doc['inputs']['w']['multivalent']
  widths = {k: v['dims'][1] for k, v in doc['device_inputs'].items() if len(v['dims']) > 1}
  assert len(set(widths.values())) == 1 and None not in widths.values()  # one shared width
  model = export.load(path)
  for n, seed in ((1, 1), (5, 2), (9, 3)):
    raw = _ragged(n, seed)
    expected = next(iter(est.predict(lambda: iter([raw]), yield_single_examples=False)))
    np.testing.assert_allclose(model.predict(raw)['logits'], expected['logits'], atol=1e-6)
