"""Issue 17's silent differences from TF, pinned to TF 2.15's numbers (`data/fixes.json`, made by
`tf_scripts/gen_fixes.py`): the sigmoid cross-entropy gradient at a logit of 0, a
`numeric_column` weight column, numpy scalar dtypes in `io.FixedLenFeature`, and the v1 canned
estimators' contract (`jestimator.compat.v1`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import columns as fc
from jestimator import heads, io
from jestimator.canned import v1 as canned_v1
from jestimator.compat import v1

from ._tf import assert_close, config, load, numpy_input, tf_variables

FIXES = load('fixes')

# -- 1. the sigmoid cross-entropy gradient at logit 0 -------------------------------------------

_HEADS = {
    'binary': lambda: heads.BinaryClassHead(),
    'logistic': lambda: heads.LogisticRegressionHead(),
    'multi_label': lambda: heads.MultiLabelHead(3),
    'binary_sum': lambda: heads.BinaryClassHead(loss_reduction=heads.LossReduction.SUM),
}


@pytest.mark.parametrize('name', sorted(_HEADS))
def test_head_loss_gradient_at_zero_logits(name):
  """TF: d loss / d logit = (sigmoid(z) - y) / n; at z = 0 that is (0.5 - y) / n, not -y / n."""
  case = FIXES['head_gradients'][name]
  head = _HEADS[name]()
  labels = np.asarray(case['labels'])
  if name == 'logistic':
    labels = labels.astype(np.float32)
  loss, grad = jax.value_and_grad(lambda z: head.loss(labels, z))(
      jnp.asarray(case['logits'], jnp.float32))
  assert_close(loss, case['loss'])
  assert_close(grad, case['grad'])


@pytest.mark.parametrize('kind', ['baseline', 'linear'])
def test_first_sgd_steps_from_zero_weights(tmp_path, kind):
  """TF: bias -0.5 after one SGD(1) step on label 0 (jestimator took 0.0), then 0.1225."""
  case = FIXES['sgd_first_steps'][kind]
  x = np.asarray(case['features']['x'], np.float32)
  y = np.asarray(case['labels'])
  if kind == 'baseline':
    est = je.BaselineClassifier(model_dir=str(tmp_path), optimizer=optax.sgd(1.0),
                                config=config())
  else:
    est = je.LinearClassifier([fc.numeric_column('x')], model_dir=str(tmp_path),
                              optimizer=optax.sgd(1.0), config=config())
  for step, expected in enumerate(case['after_each_step']):
    est.train(numpy_input({'x': x[step:step + 1]}, y[step:step + 1], 1), max_steps=step + 1)
    got = tf_variables(est)
    for name, value in expected.items():
      if not name.startswith('training/'):
        assert_close(got[name], value, what=f'{name} after step {step + 1}')


# -- 2. weight_column given as a numeric_column --------------------------------------------------

def _plus_one(x):
  return x + 1.0


def _times_two(x):
  return x * 2.0


@pytest.mark.parametrize('name', ['regression', 'binary', 'regression_shape_2'])
def test_numeric_weight_column_applies_the_column(name):
  """TF applies the column (normalizer_fn, shape): loss 20.5, not the raw-weight value."""
  case = FIXES['weight_column'][name]
  if name == 'regression':
    head = heads.RegressionHead(weight_column=fc.numeric_column('w', normalizer_fn=_plus_one))
  elif name == 'binary':
    head = heads.BinaryClassHead(weight_column=fc.numeric_column('w', normalizer_fn=_plus_one))
  else:
    head = heads.RegressionHead(label_dimension=2, weight_column=fc.numeric_column(
        'w2', shape=(2,), normalizer_fn=_times_two))
  features = {k: np.asarray(v, np.float32) for k, v in case['features'].items()}
  loss = head.loss(np.asarray(case['labels']), np.asarray(case['logits'], np.float32),
                   features=features)
  assert_close(loss, case['loss'])


def test_numeric_weight_column_through_a_canned_estimator(tmp_path):
  case = FIXES['weight_column']['linear_regressor_eval']
  features = {k: np.asarray(v, np.float32) for k, v in case['features'].items()}
  labels = np.asarray(case['labels'], np.float32)
  est = je.LinearRegressor([fc.numeric_column('x')], model_dir=str(tmp_path),
                           weight_column=fc.numeric_column('w', normalizer_fn=_plus_one),
                           optimizer=optax.sgd(0.0), config=config())
  est.train(numpy_input(features, labels, 3), max_steps=1)
  got = est.evaluate(numpy_input(features, labels, 3))
  for key, value in case['metrics'].items():
    assert_close(got[key], value, what=key)


def test_numeric_weight_column_default_value_fills_missing_weights():
  """As the column does for features: NaN takes default_value (then the normalizer runs)."""
  head = heads.RegressionHead(weight_column=fc.numeric_column('w', default_value=3.0,
                                                              normalizer_fn=_plus_one))
  loss = head.loss(np.array([[1.], [2.]], np.float32), np.zeros((2, 1), np.float32),
                   features={'w': np.array([np.nan, 1.0], np.float32)})
  assert_close(loss, ((3 + 1) * 1 + (1 + 1) * 4) / 2)


def test_weight_column_of_another_kind_is_rejected():
  with pytest.raises(TypeError, match='weight_column must be a feature key'):
    heads.BinaryClassHead(weight_column=fc.categorical_column_with_identity('w', 3))


# -- 3. numpy scalar types as io dtypes ----------------------------------------------------------

@pytest.mark.parametrize('dtype, expected', [
    (np.float32, 'float32'), (np.int64, 'int64'), (np.dtype('float32'), 'float32'),
    (np.dtype(np.int64), 'int64'), ('float32', 'float32'), (float, 'float32'), (int, 'int64'),
    (np.bytes_, 'string'), (str, 'string')])
def test_fixed_len_feature_accepts_numpy_dtypes(dtype, expected):
  assert io.FixedLenFeature([], dtype).dtype == expected
  assert io.VarLenFeature(dtype).dtype == expected


@pytest.mark.parametrize('dtype', [np.float64, np.int32, np.dtype('float16')])
def test_fixed_len_feature_still_rejects_other_dtypes(dtype):
  with pytest.raises(TypeError, match='dtype must be float32, int64 or string'):
    io.FixedLenFeature([], dtype)


# -- 4. the v1 contract: summed loss, v1 optimizers and default learning rates -----------------

_V1 = {
    'BaselineClassifier': lambda d, cols: v1.BaselineClassifier(model_dir=d, config=config()),
    'BaselineRegressor': lambda d, cols: v1.BaselineRegressor(model_dir=d, config=config()),
    'LinearClassifier': lambda d, cols: v1.LinearClassifier(cols, model_dir=d, config=config()),
    'LinearRegressor': lambda d, cols: v1.LinearRegressor(cols, model_dir=d, config=config()),
    'LinearClassifier_none': lambda d, cols: v1.LinearClassifier(
        cols, model_dir=d, optimizer=None, config=config()),
    'DNNLinearCombinedClassifier': lambda d, cols: v1.DNNLinearCombinedClassifier(
        model_dir=d, linear_feature_columns=cols, config=config()),
    'DNNLinearCombinedRegressor': lambda d, cols: v1.DNNLinearCombinedRegressor(
        model_dir=d, linear_feature_columns=cols, config=config()),
}


@pytest.mark.parametrize('name', sorted(_V1))
def test_v1_canned_estimators_match_tf(tmp_path, name):
  """Three default-optimizer steps on one batch of 4, then evaluate: TF's variables and metrics
  (`loss` is the batch's sum, `average_loss` the mean)."""
  case = FIXES['v1_contract'][name]
  raw = FIXES['v1_contract']['features']
  features = {'x': np.asarray(raw['x'], np.float32), 'c': np.asarray(raw['c'], object)}
  labels = np.asarray(case['labels'])
  cols = [fc.numeric_column('x'), fc.categorical_column_with_vocabulary_list('c', ['a', 'b', 'c'])]
  est = _V1[name](str(tmp_path), cols)
  est.train(numpy_input(features, labels, 4, epochs=3), max_steps=3)
  got = tf_variables(est)
  for var, value in case['variables'].items():
    assert_close(got[var], value, rtol=1e-5, what=var)
  results = est.evaluate(numpy_input(features, labels, 4))
  for key, value in case['metrics'].items():
    if key == 'auc_precision_recall':
      continue  # v1 sums PR by trapezoids, v2 (and jestimator) interpolates: see README
    # auc: TF's trapezoid over 200 thresholds carries its 1e-7 epsilon; 1e-5 covers it.
    assert_close(results[key], value, rtol=1e-5, atol=1e-5, what=key)


@pytest.mark.parametrize('name', ['Adagrad', 'Adam', 'Ftrl', 'RMSProp', 'SGD'])
def test_v1_optimizer_names_are_tf_compat_v1_train_optimizers(name):
  case = FIXES['v1_optimizers']
  opt = canned_v1.get_optimizer(name, case['learning_rate'])
  w = jnp.asarray(case['init'], jnp.float32)
  state = opt.init(w)
  for grad, expected in zip(case['grads'], case['after'][name]):
    updates, state = opt.update(jnp.asarray(grad, jnp.float32), state, w)
    w = optax.apply_updates(w, updates)
    # Adam: optax adds epsilon to the bias-corrected root, TF to the raw one (1e-8 scale).
    assert_close(w, expected, rtol=1e-6, atol=1e-6 if name != 'Adam' else 1e-5, what=name)


def test_v1_defaults_and_argument_names():
  cols = [fc.numeric_column('x')]
  assert v1.LinearClassifier(cols).head.loss_reduction == heads.LossReduction.SUM
  assert v1.DNNRegressor([2], cols).head.loss_reduction == heads.LossReduction.SUM
  assert v1.BaselineClassifier(loss_reduction='weighted_mean').head.loss_reduction == (
      heads.LossReduction.MEAN)
  with pytest.raises(ValueError, match='partitioner is not supported'):
    v1.LinearClassifier(cols, partitioner=object())
  with pytest.raises(ValueError, match='Unsupported optimizer name'):
    v1.DNNClassifier([2], cols, optimizer='Momentum')
  with pytest.raises(ValueError, match='weighted_sum_by_nonzero_weights'):
    v1.DNNClassifier([2], cols, loss_reduction='weighted_sum_by_nonzero_weights')


# -- the sweep: other ties in a differentiated path ---------------------------------------------

def test_embedding_max_norm_gradient_at_the_norm():
  """TF's clip_by_norm (`v * c / maximum(|v|, c)`) sends the whole gradient through |v| when
  |v| == c: d(w . clip(v))/dv = w - v (v . w) / c**2 = [-0.32, 0.24] for v = [3, 4], c = 5,
  w = [1, 2] (hand-derived); jnp.minimum's split tie gave [0.34, 1.12]."""
  cat = fc.categorical_column_with_identity('i', 1)
  col = fc.embedding_column(cat, 2, combiner='sum', max_norm=5.0)
  x = fc.transform_features({'i': [[0]]}, [col])

  def f(table):
    out = fc.DenseFeatures([col]).apply(
        {'params': {'i_embedding': {'embedding_weights': table}}}, x)
    return jnp.sum(out * jnp.array([1.0, 2.0]))

  assert_close(jax.grad(f)(jnp.array([[3.0, 4.0]])), [[-0.32, 0.24]], rtol=1e-5)
