"""Export and serving against TF's own tests and TF Serving's code (issue 25).

Every case names the TF source it follows: `tensorflow/estimator`'s `exporter.py` /
`exporter_test.py`, TF's `saved_model/model_utils/export_output.py`, and `tensorflow/serving`'s
`util/json_tensor.cc` / `json_tensor_test.cc`, `servables/tensorflow/classifier.cc` and
`regressor.cc`. Exporter decisions are compared with `data/export_exporters.json`, written by
TF 2.15's exporters (`tf_scripts/export_exporters.py`, a mock estimator as in TF's tests).
"""
import inspect
import json
import math
import os
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import columns as fc
from jestimator import export
from jestimator.export import exporters as exporters_lib
from jestimator.serve import ModelServer

DATA = os.path.join(os.path.dirname(__file__), 'data')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = ('a', 'b', 'c')
# json_tensor_test.cc FromJsonSingleFloatTensorSixDigitPrecision's float32 values and the JSON
# numbers TF Serving writes for them, plus the value that needs nine digits.
PINNED = [9000000, 999999, 0.5, .0003, .00003, 555557.5, 0.10767170786857605]
PINNED_JSON = '[9e+06, 999999.0, 0.5, 0.0003, 3e-05, 555557.5, 0.107671708]'


@pytest.fixture(scope='module')
def tf_exporters():
  with open(os.path.join(DATA, 'export_exporters.json')) as f:
    return json.load(f)


class _MockEstimator:
  """As `exporter_test.py`'s mock: `export_saved_model` records its arguments, writes nothing."""

  def __init__(self):
    self.calls = []

  def export_saved_model(self, export_dir_base, serving_input_fn=None, assets_extra=None,
                         as_text=False, checkpoint_path=None, platforms=None):
    self.calls.append(dict(export_dir_base=export_dir_base, assets_extra=assets_extra))
    return 'export_result_path'


def _best_decisions(tmp_path, evals, **kwargs):
  exporter = export.BestExporter('best', lambda: None, **kwargs)
  path, out = str(tmp_path / 'export' / 'best'), []
  for result in evals:
    try:
      out.append(exporter.export(_MockEstimator(), path, 'ckpt', result, False) is not None)
    except Exception as e:  # noqa: BLE001 - compared with TF's recorded error
      out.append(type(e).__name__)
  return out


# -- 1. BestExporter calls compare_fn by keyword (exporter.py BestExporter.export) ----------------
def test_best_exporter_calls_compare_fn_by_keyword(tmp_path, tf_exporters):
  def reversed_args(current_eval_result, best_eval_result):  # TF's names, not TF's order
    return current_eval_result['accuracy'] > best_eval_result['accuracy']
  case = tf_exporters['reversed_compare_fn']
  got = _best_decisions(tmp_path, [{'accuracy': a} for a in case['accuracies']],
                        compare_fn=reversed_args)
  assert got == case['exported'] == [True, True, False, True]


def test_best_exporter_refuses_other_compare_fn_names(tf_exporters):
  """exporter.py `_verify_compare_fn_args`: exactly best_eval_result and current_eval_result."""
  fns = {'two_other_names': lambda a, b: True,
         'extra_arg': lambda best_eval_result, current_eval_result, x=1: True, 'none': None}
  for name, fn in fns.items():
    assert tf_exporters['compare_fn_errors'][name] == 'ValueError'
    with pytest.raises(ValueError, match='compare_fn'):
      export.BestExporter('best', lambda: None, compare_fn=fn)
  export.BestExporter('best', compare_fn=lambda *, current_eval_result, best_eval_result: True)


# -- 2, 3, 8, 9, 12, 16: the REST answers (json_tensor.cc, classifier.cc, regressor.cc) -----------
def _model_fn(features, labels, mode):
  logits = nn.Dense(3)(features['x'])
  probs = jax.nn.softmax(logits)
  if mode != je.ModeKeys.PREDICT:
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return je.EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1))
  ids = jnp.broadcast_to(jnp.arange(3, dtype=jnp.int32), probs.shape)
  pinned = jnp.broadcast_to(jnp.asarray(PINNED, jnp.float32), (probs.shape[0], len(PINNED)))
  outputs = {
      'serving_default': je.ClassificationOutput(scores=probs, classes=ids,
                                                 class_vocabulary=VOCAB),
      'classes_only': je.ClassificationOutput(classes=ids[:, :2], class_vocabulary=VOCAB),
      'width_mismatch': je.ClassificationOutput(scores=probs, classes=ids[:, :2],
                                                class_vocabulary=VOCAB),
      'regression': je.RegressionOutput(logits[:, :1]),
      'regression_2d': je.RegressionOutput(logits[:, :2]),  # a label_dimension=2 regressor's
      'pinned': je.PredictOutput({'values': pinned}),
  }
  return je.EstimatorSpec(mode, predictions={'probabilities': probs}, export_outputs=outputs)


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """`(post(verb, body) -> (status, JSON), post_raw, estimator, export base)` of a served model."""
  model_dir = str(tmp_path_factory.mktemp('tf_parity_export'))
  est = je.Estimator(_model_fn, model_dir, config=je.RunConfig(seed=0))
  x = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
  est.train(lambda: iter([({'x': x}, np.arange(8) % 3)]), max_steps=1)
  base = os.path.join(model_dir, 'export')
  est.export_saved_model(base, export.build_raw_serving_input_fn({'x': ('float32', [2])}))
  server = ModelServer(base, 'm', port=0, warmup=(), poll_interval_s=0).start()

  def post_raw(verb, body):
    code, _, data = server.handle('POST', f'/v1/models/m:{verb}', json.dumps(body).encode())
    return code, data.decode()

  def post(verb, body):
    code, data = post_raw(verb, body)
    return code, json.loads(data)
  try:
    yield post, post_raw, est, base
  finally:
    server.stop()


EXAMPLES = [{'x': [0.5, -1.0]}, {'x': [1.5, 2.0]}]


def test_classify_and_regress_answer_results(served):
  """json_tensor.cc `kClassifyRegressResponseKey = "results"` (json_tensor_test.cc
  JsonFromClassificationResult / JsonFromRegressionResult); TF Serving's REST page's "result" is
  a doc error."""
  post = served[0]
  code, body = post('classify', {'examples': EXAMPLES})
  assert code == 200 and set(body) == {'results'}, body
  assert [[label for label, _ in row] for row in body['results']] == [list(VOCAB)] * 2
  code, body = post('regress', {'examples': EXAMPLES, 'signature_name': 'regression'})
  assert code == 200 and set(body) == {'results'} and len(body['results']) == 2, body


def test_regress_refuses_outputs_wider_than_one(served):
  """regressor.cc: "Expected output Tensor shape to be either [batch_size] or [batch_size, 1]"."""
  code, body = served[0]('regress', {'examples': EXAMPLES, 'signature_name': 'regression_2d'})
  assert code == 400
  assert 'Expected output Tensor shape to be either [batch_size] or [batch_size, 1]' in (
      body['error'])


def test_classify_refuses_classes_and_scores_of_different_widths(served):
  """classifier.cc: "Tensors class and score should match in dim_size(1). Got 2 vs. 3"."""
  code, body = served[0]('classify', {'examples': EXAMPLES, 'signature_name': 'width_mismatch'})
  assert code == 400
  assert 'Tensors class and score should match in dim_size(1). Got 2 vs. 3' in body['error']


def test_classify_without_scores_answers_score_zero(served):
  """classifier.cc leaves `score` unset without a scores output: the proto's 0.0 is written."""
  code, body = served[0]('classify', {'examples': EXAMPLES, 'signature_name': 'classes_only'})
  assert code == 200, body
  assert body['results'] == [[['a', 0.0], ['b', 0.0]]] * 2


def test_float32_outputs_are_written_as_tf_serving_writes_them(served):
  """json_tensor.cc `WriteDecimal`: `%.6g` when it reads back as the float32, else `%.9g`;
  json_tensor_test.cc FromJsonSingleFloatTensorSixDigitPrecision pins the first six."""
  code, text = served[1]('predict', {'instances': EXAMPLES[:1], 'signature_name': 'pinned'})
  assert code == 200, text
  assert json.loads(text)['predictions'] == [json.loads(PINNED_JSON)]
  assert '0.107671708' in text and '0.10767170786857605' not in text
  assert np.array_equal(np.float32(json.loads(PINNED_JSON)), np.float32(PINNED))  # round trips


def test_classify_refuses_integers_for_float_features(served):
  """json_tensor.cc `AddValueToFeature` makes a JSON integer an int64_list feature, which the
  float feature's parse refuses; a number with a decimal point is a float."""
  post = served[0]
  code, body = post('classify', {'examples': [{'x': [1, 2]}]})
  assert code == 400 and "'x'" in body['error'] and 'decimal point' in body['error'], body
  code, body = post('classify', {'examples': [{'x': [1.0, 2.0]}]})
  assert code == 200, body
  code, body = post('predict', {'instances': [{'x': [1, 2]}]})  # predict takes JSON tensors
  assert code == 200, body


# -- 3, 4. Export outputs are checked as TF's export_output.py ------------------------------------
_F = jnp.ones((2, 3), jnp.float32)
_I = jnp.zeros((2, 3), jnp.int32)


@pytest.mark.parametrize('make, match', [
    (lambda: je.ClassificationOutput(), 'scores or classes'),
    (lambda: je.ClassificationOutput(scores=_I), 'scores must be a float'),
    (lambda: je.ClassificationOutput(scores=[[0.5, 0.5]]), 'scores must be a float'),
    (lambda: je.ClassificationOutput(classes=jnp.array([[0.7, 1.9]])), 'classes must be an int'),
    (lambda: je.ClassificationOutput(classes=_I, class_vocabulary=(1, 2, 3)), 'strings'),
    (lambda: je.RegressionOutput(_I), 'value must be a float'),
    (lambda: je.RegressionOutput(1.5), 'value must be a float'),
    (lambda: je.PredictOutput({1: _F}), 'key must be a string'),
    (lambda: je.PredictOutput({'p': [1.0, 2.0]}), 'value must be an array'),
    (lambda: je.PredictOutput(3.0), 'value must be an array'),
])
def test_export_outputs_refuse_what_tf_refuses(make, match):
  """export_output.py: ClassificationOutput (float scores, string classes: here integer ids named
  by class_vocabulary), RegressionOutput (float value), PredictOutput (string keys, tensors)."""
  with pytest.raises(ValueError, match=match):
    make()


def test_export_outputs_accept_what_tf_accepts():
  assert je.PredictOutput({('head', 'p'): _F}).as_dict().keys() == {'head/p'}  # tuple keys join
  assert je.PredictOutput(_F).as_dict().keys() == {'output'}
  assert set(je.ClassificationOutput(scores=_F, classes=_I).as_dict()) == {'scores', 'classes'}
  assert je.RegressionOutput(np.zeros(2, np.float32)).as_dict()['outputs'].shape == (2,)


# -- 5, 6. Garbage collection and the constructors' argument order (exporter.py) ------------------
def test_garbage_collection_counts_only_timestamp_folders(tmp_path):
  """exporter.py `_export_version_parser`: only 10-digit names are export versions."""
  for name in ('1', '12345', '1500000000', '1500000001', '1500000002'):
    (tmp_path / name).mkdir()
  exporter = export.LatestExporter('latest', lambda: None, exports_to_keep=2)
  exporter.export(_MockEstimator(), str(tmp_path), 'ckpt', {'loss': 1.0}, False)
  assert sorted(os.listdir(tmp_path)) == ['1', '12345', '1500000001', '1500000002']


def test_latest_exporter_takes_tf_positional_order(tmp_path, tf_exporters):
  """exporter.py `LatestExporter(name, serving_input_receiver_fn, assets_extra=None,
  as_text=False, exports_to_keep=5)`: a third positional None is assets_extra, not keep-all."""
  case = tf_exporters['latest_gc_positional']
  for name in case['folders']:
    (tmp_path / name).mkdir()
  export.LatestExporter('latest', lambda: None, None).export(
      _MockEstimator(), str(tmp_path), 'ckpt', {'loss': 1.0}, False)
  assert sorted(os.listdir(tmp_path)) == case['left']


@pytest.mark.parametrize('cls, tf_params', [
    (export.LatestExporter, ['name', 'serving_input_receiver_fn', 'assets_extra', 'as_text',
                             'exports_to_keep']),
    (export.FinalExporter, ['name', 'serving_input_receiver_fn', 'assets_extra', 'as_text']),
    (export.BestExporter, ['name', 'serving_input_receiver_fn', 'event_file_pattern',
                           'compare_fn', 'assets_extra', 'as_text', 'exports_to_keep']),
])
def test_exporter_signatures_follow_tf(cls, tf_params):
  """The positions of TF 2.15's constructor parameters (exporter.py); the receiver function is
  named `serving_input_fn` here, and `platforms` comes after TF's parameters."""
  params = list(inspect.signature(cls).parameters)
  assert params[:len(tf_params)] == [
      'serving_input_fn' if p == 'serving_input_receiver_fn' else p for p in tf_params]
  assert params[len(tf_params):] == ['platforms']


def test_exporters_pass_assets_extra(tmp_path):
  """exporter_test.py passes assets_extra={...} through to export_saved_model."""
  est = _MockEstimator()
  export.BestExporter('best', lambda: None, None, exporters_lib.loss_smaller,
                      {'from/path': 'to/path'}, False, 1).export(
                          est, str(tmp_path), 'ckpt', {'loss': 1.0}, False)
  assert est.calls[0]['assets_extra'] == {'from/path': 'to/path'}


# -- 7, 15. NaN, empty and None evaluation results (exporter.py BestExporter.export) --------------
def test_nan_loss_is_kept_as_a_float_and_compares_false(tmp_path, tf_exporters):
  case = tf_exporters['nan_loss']
  evals = [{'loss': math.nan if v == 'nan' else v} for v in case['losses']]
  assert _best_decisions(tmp_path, evals) == case['exported'] == [True, False, False]
  with open(tmp_path / 'export' / 'best' / exporters_lib.BEST_RESULT_FILE) as f:
    loss = json.load(f)['eval_result']['loss']
  assert isinstance(loss, float) and math.isnan(loss)
  # a restarted job reads it back and compares without a TypeError
  restarted = export.BestExporter('best', lambda: None)
  assert restarted.export(_MockEstimator(), str(tmp_path / 'export' / 'best'), 'ckpt',
                          {'loss': 0.01}, False) is None


@pytest.mark.parametrize('case', ['none_first', 'empty_first'])
def test_best_exporter_exports_first_on_empty_or_none_result(tmp_path, tf_exporters, case):
  evals = {'none_first': [None, {'loss': 1.0}, {'loss': 0.5}],
           'empty_first': [{}, {'loss': 1.0}]}[case]
  assert _best_decisions(tmp_path, evals) == tf_exporters[case]['exported']


# -- 14. Version folders never run ahead of the clock (export_lib get_timestamped_export_dir) -----
def test_exports_in_one_second_wait_for_the_next(served):
  _, _, est, _ = served
  base = os.path.join(est.model_dir, 'export_clock')
  paths = []
  for _ in range(2):
    paths.append(est.export_saved_model(
        base, export.build_raw_serving_input_fn({'x': ('float32', [2])})))
    assert int(os.path.basename(paths[-1])) <= time.time()
  assert int(os.path.basename(paths[1])) > int(os.path.basename(paths[0]))


# -- 17. Exporters fail before training; documented submodules are attributes ---------------------
def test_train_and_evaluate_checks_exporters_before_training(tmp_path):
  """TF fails at its first export too; here a model that cannot be exported (a Python
  normalizer_fn does not serialise) fails before any step is trained."""
  col = fc.numeric_column('x', normalizer_fn=lambda v: v * 2)
  est = je.LinearRegressor([col], model_dir=str(tmp_path))
  x = np.ones((4, 1), np.float32)
  input_fn = lambda: iter([({'x': x}, x)] * 3)
  with pytest.raises(ValueError, match='normalizer_fn'):
    je.train_and_evaluate(est, je.TrainSpec(input_fn, max_steps=3),
                          je.EvalSpec(input_fn, steps=1,
                                      exporters=export.LatestExporter('latest')))
  assert est.latest_checkpoint() is None


def test_documented_submodules_are_attributes():
  code = ('import jestimator as je; assert callable(je.export.load); '
          'assert callable(je.serve.main)')
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  run = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]


def test_export_saved_model_takes_tf_order_and_assets_extra(served, tmp_path):
  """TF's `export_saved_model(export_dir_base, serving_input_receiver_fn, assets_extra=None,
  as_text=False, checkpoint_path=None)`; assets_extra lands in `assets.extra/` (export_lib.py)."""
  _, _, est, _ = served
  src = tmp_path / 'vocab.txt'
  src.write_text('hello\n')
  fn = export.build_raw_serving_input_fn({'x': ('float32', [2])})
  base = str(tmp_path / 'export')
  with pytest.raises(ValueError, match='relative path'):
    est.export_saved_model(base, fn, {'../out.txt': str(src)})
  assert not os.path.exists(base)  # refused before anything was written
  path = est.export_saved_model(base, fn, {'my/vocab.txt': str(src)}, False,
                                est.latest_checkpoint())
  with open(os.path.join(path, 'assets.extra', 'my', 'vocab.txt')) as f:
    assert f.read() == 'hello\n'
  assert export.load(path).global_step == 1  # the manifest covers the extra file
