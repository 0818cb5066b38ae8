"""Canned estimators: train, evaluate, predict and resume on small data with TF's key sets."""
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import columns as fc
from jestimator import canned

BINARY_EVAL_KEYS = {'accuracy', 'accuracy_baseline', 'auc', 'auc_precision_recall', 'average_loss',
                    'label/mean', 'loss', 'precision', 'prediction/mean', 'recall', 'global_step'}
BINARY_PREDICT_KEYS = {'logits', 'logistic', 'probabilities', 'class_ids', 'classes',
                       'all_class_ids', 'all_classes'}
REGRESSION_EVAL_KEYS = {'average_loss', 'label/mean', 'loss', 'prediction/mean', 'global_step'}


def _data(n=200, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=n).astype(np.float32)
  color = rng.choice(['red', 'green', 'blue'], size=n).astype(object)
  score = x + (color == 'red') * 1.5 - 0.5
  y = (score > 0).astype(np.int64)
  return {'x': x, 'color': color, 'w': np.ones(n, np.float32)}, y, score.astype(np.float32)


def _cols():
  x = fc.numeric_column('x')
  color = fc.categorical_column_with_vocabulary_list('color', ['red', 'green', 'blue'])
  return x, color


def _input(features, labels, shuffle=False, epochs=1, batch=32):
  return je.inputs.numpy_input_fn(features, labels, batch_size=batch, num_epochs=epochs,
                                  shuffle=shuffle, seed=0)


def _config():
  return je.RunConfig(seed=0, save_checkpoints_steps=20, log_step_count_steps=1000)


def _check_roundtrip(est, features, labels, eval_keys, predict_keys, steps=40):
  est.train(_input(features, labels, shuffle=True, epochs=None), max_steps=steps)
  results = est.evaluate(_input(features, labels))
  assert set(results) == eval_keys
  assert results['global_step'] == steps
  preds = list(est.predict(_input({k: v[:5] for k, v in features.items()}, None)))
  assert len(preds) == 5 and set(preds[0]) == predict_keys
  return results, preds


@pytest.mark.parametrize('kind', ['linear', 'dnn', 'wide_deep', 'baseline'])
def test_classifiers_train_evaluate_predict(tmp_path, kind):
  features, labels, _ = _data()
  x, color = _cols()
  make = {
      'linear': lambda d: canned.LinearClassifier([x, color], model_dir=d, config=_config()),
      'dnn': lambda d: canned.DNNClassifier([8], [x, fc.indicator_column(color)], model_dir=d,
                                           config=_config()),
      'wide_deep': lambda d: canned.DNNLinearCombinedClassifier(
          model_dir=d, linear_feature_columns=[color], dnn_feature_columns=[x],
          dnn_hidden_units=[8], config=_config()),
      'baseline': lambda d: canned.BaselineClassifier(model_dir=d, config=_config()),
  }[kind]
  est = make(str(tmp_path))
  results, preds = _check_roundtrip(est, features, labels, BINARY_EVAL_KEYS, BINARY_PREDICT_KEYS)
  if kind != 'baseline':
    assert results['accuracy'] > 0.75, results
  else:
    # The baseline learns the prior: its predicted probability approaches the label mean.
    assert abs(results['prediction/mean'] - labels.mean()) < 0.1
  assert preds[0]['classes'][0] in (b'0', b'1')
  # Resume in a fresh estimator object: steps count on from the checkpoint.
  again = make(str(tmp_path))
  again.train(_input(features, labels, shuffle=True, epochs=None), steps=5)
  assert again.get_variable_value('global_step') == 45


@pytest.mark.parametrize('kind', ['linear', 'dnn', 'wide_deep', 'baseline'])
def test_regressors(tmp_path, kind):
  features, _, target = _data()
  x, color = _cols()
  est = {
      'linear': lambda: canned.LinearRegressor([x, color], model_dir=str(tmp_path),
                                               config=_config(), optimizer='SGD'),
      'dnn': lambda: canned.DNNRegressor([8], [x, fc.indicator_column(color)],
                                         model_dir=str(tmp_path), config=_config()),
      'wide_deep': lambda: canned.DNNLinearCombinedRegressor(
          model_dir=str(tmp_path), linear_feature_columns=[color], dnn_feature_columns=[x],
          dnn_hidden_units=[8], config=_config()),
      'baseline': lambda: canned.BaselineRegressor(model_dir=str(tmp_path), config=_config()),
  }[kind]()
  results, preds = _check_roundtrip(est, features, target, REGRESSION_EVAL_KEYS, {'predictions'})
  assert np.isfinite(results['average_loss'])
  assert preds[0]['predictions'].shape == (1,)


def test_multiclass_with_label_vocabulary_and_weights(tmp_path):
  features, labels, score = _data(300)
  names = np.array(['low', 'mid', 'high'], dtype=object)
  y = names[np.digitize(score, [-0.5, 0.8])]
  x, color = _cols()
  est = canned.DNNClassifier([16], [x, fc.indicator_column(color)], model_dir=str(tmp_path),
                             n_classes=3, label_vocabulary=['low', 'mid', 'high'],
                             weight_column='w', config=_config())
  est.train(_input(features, y, shuffle=True, epochs=None), max_steps=60)
  results = est.evaluate(_input(features, y))
  assert set(results) == {'accuracy', 'average_loss', 'loss', 'global_step'}
  assert results['accuracy'] > 0.6
  pred = next(iter(est.predict(_input({k: v[:1] for k, v in features.items()}, None))))
  assert set(pred) == {'logits', 'probabilities', 'class_ids', 'classes', 'all_class_ids',
                       'all_classes'}
  assert pred['classes'][0] in (b'low', b'mid', b'high')
  assert list(pred['all_classes']) == [b'low', b'mid', b'high']


def test_wide_and_deep_optimizers_touch_only_their_own_parameters(tmp_path):
  features, labels, _ = _data()
  x, color = _cols()

  def train(dnn_lr, linear_lr, d):
    est = canned.DNNLinearCombinedClassifier(
        model_dir=d, linear_feature_columns=[color], dnn_feature_columns=[x], dnn_hidden_units=[4],
        linear_optimizer=optax.sgd(linear_lr), dnn_optimizer=optax.sgd(dnn_lr), config=_config())
    est.train(_input(features, labels, shuffle=True, epochs=None), max_steps=1)
    est_init = canned.DNNLinearCombinedClassifier(
        model_dir=d + '_init', linear_feature_columns=[color], dnn_feature_columns=[x],
        dnn_hidden_units=[4], linear_optimizer=optax.sgd(0.0), dnn_optimizer=optax.sgd(0.0),
        config=_config())
    est_init.train(_input(features, labels, shuffle=True, epochs=None), max_steps=1)
    changed = {}
    for name in est.get_variable_names():
      if name.startswith('params/'):
        changed[name] = not np.allclose(est.get_variable_value(name),
                                        est_init.get_variable_value(name))
    return changed

  only_linear = train(0.0, 0.5, str(tmp_path / 'a'))
  assert any(v for k, v in only_linear.items() if k.startswith('params/linear/'))
  assert not any(v for k, v in only_linear.items() if k.startswith('params/dnn/'))
  only_dnn = train(0.5, 0.0, str(tmp_path / 'b'))
  assert any(v for k, v in only_dnn.items() if k.startswith('params/dnn/'))
  assert not any(v for k, v in only_dnn.items() if k.startswith('params/linear/'))


def test_bad_arguments_are_clear_errors(tmp_path):
  x, color = _cols()
  with pytest.raises(ValueError, match='n_classes'):
    canned.DNNClassifier([4], [x], n_classes=1)
  with pytest.raises(ValueError, match='hidden_units'):
    canned.DNNClassifier([], [x])
  with pytest.raises(ValueError, match='Unknown optimizer.*Adagrad'):
    canned.DNNClassifier([4], [x], optimizer='Adadelta')
  with pytest.raises(ValueError, match='linear_feature_columns or dnn_feature_columns'):
    canned.DNNLinearCombinedClassifier(dnn_hidden_units=[4])


def test_bad_labels_name_the_problem(tmp_path):
  features, labels, _ = _data(40)
  x, color = _cols()
  est = canned.LinearClassifier([x], model_dir=str(tmp_path), n_classes=3, config=_config())
  with pytest.raises(ValueError, match='3'):
    est.train(_input(features, labels + 2, epochs=None), max_steps=2)
  est = canned.LinearClassifier([x], model_dir=str(tmp_path / 'v'), label_vocabulary=['a', 'b'],
                                config=_config())
  with pytest.raises(ValueError, match="'c'"):
    est.train(_input(features, np.array(['a', 'c'] * 20, dtype=object), epochs=None),
              max_steps=2)
  # A soft label on a (binary) classifier: TF trained on it silently, with meaningless accuracy.
  for kind in ('linear', 'dnn'):
    binary = (canned.LinearClassifier([x], model_dir=str(tmp_path / f'soft_{kind}'),
                                      config=_config()) if kind == 'linear' else
              canned.DNNClassifier([4], [x], model_dir=str(tmp_path / f'soft_{kind}'),
                                   config=_config()))
    soft = labels.astype(np.float32)
    soft[3] = 0.5
    with pytest.raises(ValueError, match=r'class ids 0 or 1; got \[0.5\].*LogisticRegressionHead'):
      binary.train(_input(features, soft, epochs=None), max_steps=2)
    assert binary.latest_checkpoint() is None
  est = canned.LinearClassifier([x], model_dir=str(tmp_path / 'w'), weight_column='missing',
                                config=_config())
  with pytest.raises((ValueError, KeyError), match='missing'):
    est.train(_input(features, labels, epochs=None), max_steps=2)


def test_canned_classifiers_take_the_heads_auc_thresholds(tmp_path):
  """Issue 24: on rare-event data TF's 200 thresholds misreport AUC; the canned classifiers take
  the binary head's `auc_thresholds` ('logit' here), which matches the exact AUC of the model's
  own probabilities (numpy's pairwise count)."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(20000, 1)).astype(np.float32)
  y = (rng.uniform(size=20000) < 1 / (1 + np.exp(7.0 - 1.5 * x[:, 0]))).astype(np.int32)
  assert 0.0005 < y.mean() < 0.01
  cols = [fc.numeric_column('x')]
  fn = je.inputs.numpy_input_fn({'x': x}, y, batch_size=20000, shuffle=False)
  est = je.LinearClassifier(cols, model_dir=str(tmp_path / 'm'), auc_thresholds='logit',
                            optimizer=optax.adam(0.3), config=je.RunConfig(seed=0))
  est.train(je.inputs.numpy_input_fn({'x': x}, y, batch_size=20000, num_epochs=None,
                                     shuffle=False), steps=150)
  p = np.array([r['logistic'][0] for r in est.predict(fn)])
  pos, neg = p[y == 1], p[y == 0]
  exact = float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                / (pos.size * neg.size))
  assert est.evaluate(fn)['auc'] == pytest.approx(exact, abs=0.01)
  default = je.LinearClassifier(cols, model_dir=str(tmp_path / 'm'), optimizer=optax.adam(0.3))
  assert abs(default.evaluate(fn)['auc'] - exact) > 0.02       # TF's thresholds
  for make in (lambda **k: je.DNNClassifier([4], cols, **k),
               lambda **k: je.DNNLinearCombinedClassifier(linear_feature_columns=cols, **k),
               lambda **k: je.BaselineClassifier(**k)):
    make(auc_thresholds='logit')
    with pytest.raises(ValueError, match="auc_thresholds='logit' is for n_classes=2"):
      make(auc_thresholds='logit', n_classes=3)
