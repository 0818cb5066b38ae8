"""`tf.compat.v1.estimator` for ported r1 programs: the v1 canned estimators and the names beside them.

An r1 program's `tf.estimator.X` (TF 1.x, or `import tensorflow.compat.v1 as tf`) becomes
`jestimator.compat.v1.X`: the canned estimators here keep the v1 contract (loss summed over the
batch, `tf.compat.v1.train` optimizers and v1 default learning rates, v1 argument names; see
`jestimator.canned.v1`), and the core names (`Estimator`, `RunConfig`, `EstimatorSpec`,
`ModeKeys`, `TrainSpec`, `EvalSpec`, `train_and_evaluate`) are jestimator's own, which a v1
program uses as it used TF's.

Example (the census r1 wide & deep program):
  from jestimator.compat import v1 as estimator
  model = estimator.DNNLinearCombinedClassifier(
      model_dir=model_dir, linear_feature_columns=wide_columns,
      dnn_feature_columns=deep_columns, dnn_hidden_units=[100, 75, 50, 25])
"""
from jestimator.canned.v1 import (BaselineClassifier, BaselineRegressor, DNNClassifier,
                                  DNNLinearCombinedClassifier, DNNLinearCombinedRegressor,
                                  DNNRegressor, LinearClassifier, LinearRegressor)
from jestimator.distributed.training import EvalSpec, TrainSpec, train_and_evaluate
from jestimator.driver.estimator import Estimator
from jestimator.driver.run_config import RunConfig
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.spec import EstimatorSpec

__all__ = [
    'BaselineClassifier', 'BaselineRegressor', 'DNNClassifier', 'DNNLinearCombinedClassifier',
    'DNNLinearCombinedRegressor', 'DNNRegressor', 'Estimator', 'EstimatorSpec', 'EvalSpec',
    'LinearClassifier', 'LinearRegressor', 'ModeKeys', 'RunConfig', 'TrainSpec',
    'train_and_evaluate',
]
