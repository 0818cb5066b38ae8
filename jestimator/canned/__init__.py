"""Canned estimators and heads: common models configured by feature columns (TF v2 contracts).

Each canned estimator only builds a `model_fn` (body -> logits, then a head -> spec) over the
core `Estimator`.
"""
from jestimator.canned import heads, optimizers
from jestimator.canned.baseline import BaselineClassifier, BaselineEstimator, BaselineRegressor
from jestimator.canned.dnn import DNNClassifier, DNNEstimator, DNNRegressor
from jestimator.canned.dnn_linear_combined import (DNNLinearCombinedClassifier,
                                                   DNNLinearCombinedEstimator,
                                                   DNNLinearCombinedRegressor)
from jestimator.canned.linear import LinearClassifier, LinearEstimator, LinearRegressor
from jestimator.canned.optimizers import ftrl, get_optimizer
from jestimator.canned.parsing_utils import (classifier_parse_example_spec,
                                             regressor_parse_example_spec)

__all__ = [
    'BaselineClassifier', 'BaselineEstimator', 'BaselineRegressor', 'DNNClassifier',
    'DNNEstimator', 'DNNLinearCombinedClassifier', 'DNNLinearCombinedEstimator',
    'DNNLinearCombinedRegressor', 'DNNRegressor', 'LinearClassifier', 'LinearEstimator',
    'LinearRegressor', 'classifier_parse_example_spec', 'ftrl', 'get_optimizer', 'heads',
    'optimizers', 'regressor_parse_example_spec',
]
