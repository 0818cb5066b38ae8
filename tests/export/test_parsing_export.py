"""Parsing exports (build_parsing_serving_input_fn): serialized tf.Examples in, the same answers as
Estimator.predict out, through load().predict and the REST server (b64 instances, classify)."""
from __future__ import annotations

import base64
import http.client
import json

import numpy as np
import pytest

import jestimator as je
from jestimator import columns as fc
from jestimator import export
from jestimator import io as jio
from jestimator._serving.server import ModelServer

N = 40


def _raw(n: int, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {'age': rng.uniform(18, 80, (n, 1)).astype(np.float32),
          'job': rng.choice(['Sales', 'Tech', 'Admin', 'Farming', ''], n).astype(object),
          'tags': np.array([list(rng.choice(['a', 'b', 'c'], int(k)))
                            for k in rng.integers(0, 4, n)] + [None], dtype=object)[:n]}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp('parsing_export')
  age = fc.numeric_column('age')
  job = fc.categorical_column_with_hash_bucket('job', 50)
  tags = fc.categorical_column_with_vocabulary_list('tags', ['a', 'b', 'c'])
  cols = [age, fc.indicator_column(job), fc.indicator_column(tags),
          fc.indicator_column(fc.crossed_column(['job', fc.bucketized_column(age, [40])], 64))]
  est = je.DNNClassifier([8], cols, model_dir=str(root / 'model'),
                         config=je.RunConfig(seed=1, log_step_count_steps=1000))
  raw = _raw(256, seed=0)
  y = ((raw['age'][:, 0] > 45) ^ (raw['job'] == 'Sales')).astype(np.int64)
  est.train(je.inputs.numpy_input_fn(raw, y, batch_size=32, num_epochs=3, shuffle=True))
  spec = fc.make_parse_example_spec(cols)
  path = est.export_saved_model(str(root / 'export'),
                                export.build_parsing_serving_input_fn(spec))
  pool = _raw(N, seed=5)
  serialized = jio.make_examples(pool)
  expected = next(iter(est.predict(lambda: iter([pool]), yield_single_examples=False)))
  return path, serialized, pool, expected, est


def test_loaded_export_takes_serialized_examples(exported):
  path, serialized, pool, expected, _ = exported
  model = export.load(path)
  # TF names the string input `inputs` in classify / regress signatures, `examples` in predict
  assert model.signatures['serving_default'].inputs == {
      'inputs': {'dtype': 'string', 'shape': [], 'multivalent': False}}
  assert model.signatures['predict'].inputs == {
      'examples': {'dtype': 'string', 'shape': [], 'multivalent': False}}
  got = model.predict(serialized, 'predict')
  np.testing.assert_allclose(got['probabilities'], expected['probabilities'], atol=1e-6)
  assert got['class_ids'].tolist() == expected['class_ids'].tolist()
  same = model.predict({'examples': np.array(serialized, dtype=object)}, 'predict')
  np.testing.assert_array_equal(same['probabilities'], got['probabilities'])
  # raw feature dicts still work, with the same answers
  raw = model.predict(pool, 'predict')
  np.testing.assert_allclose(raw['probabilities'], expected['probabilities'], atol=1e-6)


def test_raw_export_refuses_examples_clearly(exported, tmp_path):
  _, serialized, _, _, est = exported
  raw_path = est.export_saved_model(str(tmp_path / 'raw'))  # the same model, raw inputs
  with pytest.raises(ValueError, match='not serialized Examples.*build_parsing_serving_input_fn'):
    export.load(raw_path).predict(serialized)


def _post(port, path, body):
  c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  c.request('POST', path, body=json.dumps(body), headers={'Content-Type': 'application/json'})
  r = c.getresponse()
  out = r.status, json.loads(r.read())
  c.close()
  return out


@pytest.mark.slow
def test_rest_b64_examples_answer_as_predict(exported):
  path, serialized, pool, expected, _ = exported
  server = ModelServer(path, 'm', port=0).start()
  try:
    b64 = [{'b64': base64.b64encode(s).decode('ascii')} for s in serialized]
    code, body = _post(server.port, '/v1/models/m:predict',
                       {'instances': b64, 'signature_name': 'predict'})
    assert code == 200, body
    got = np.array([p['probabilities'] for p in body['predictions']])
    np.testing.assert_allclose(got, expected['probabilities'], atol=1e-6)
    assert [p['class_ids'] for p in body['predictions']] == expected['class_ids'].tolist()
    # row objects naming the input, and the columnar form, too
    code, body = _post(server.port, '/v1/models/m:predict',
                       {'instances': [{'inputs': b} for b in b64[:3]]})
    assert code == 200 and np.allclose([p['scores'] for p in body['predictions']],
                                       expected['probabilities'][:3], atol=1e-6)
    code, body = _post(server.port, '/v1/models/m:predict', {'inputs': b64[:2]})
    assert code == 200 and np.allclose(body['outputs']['scores'], expected['probabilities'][:2],
                                       atol=1e-6)
    # classify with feature-dict examples keeps working (TF Serving's Example format)
    rows = [{'age': float(pool['age'][i, 0]), 'job': pool['job'][i],
             'tags': list(pool['tags'][i] or [])} for i in range(4)]
    code, body = _post(server.port, '/v1/models/m:classify', {'examples': rows})
    assert code == 200, body
    np.testing.assert_allclose([[s for _, s in r] for r in body['results']],
                               expected['probabilities'][:4], atol=1e-6)
    code, body = _post(server.port, '/v1/models/m:predict', {'instances': [{'b64': 'AAAA'}]})
    assert code == 400 and 'record 0' in body['error']
  finally:
    server.stop()
