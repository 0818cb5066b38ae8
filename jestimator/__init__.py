"""jestimator: the tf.estimator abstraction (train / evaluate / predict / export) on JAX.

A `model_fn` builds a Flax network inline and returns an `EstimatorSpec`; the `Estimator` compiles
pure train / eval / predict steps once, owns the train state and writes Orbax checkpoints.

Names load on first use (PEP 562), as `jestimator.columns` does: `import jestimator` costs almost
nothing, `jestimator.Estimator` imports the core, and a serving process (`jestimator.serving`)
never loads the training side. The documented module paths (`jestimator.hooks`,
`jestimator.estimator`, ...) are real modules that type checkers resolve.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jestimator import logging  # noqa: F401  (stdlib only; public as `jestimator.logging`)

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports on first use
  from jestimator import (  # noqa: F401  (modules reachable as attributes)
      canned, checkpoints, columns, compat, datasets, distributed, early_stopping, estimator, export,
      export_output, heads, hooks, inputs, io, metric_states, metrics, mode_keys, model_fn,
      losses, experimental, optimizers, padding, run_config, serve, serving, spec, steps, strategy, summaries, summary,
      train_ops, train_state, warm_start)
  from jestimator.canned import (BaselineClassifier, BaselineEstimator, BaselineRegressor,
                                 DNNClassifier, DNNEstimator, DNNLinearCombinedClassifier,
                                 DNNLinearCombinedEstimator, DNNLinearCombinedRegressor,
                                 DNNRegressor, LinearClassifier, LinearEstimator, LinearRegressor)
  from jestimator.distributed.training import EvalSpec, TrainSpec, train_and_evaluate
  from jestimator.driver.early_stopping import (make_early_stopping_hook, stop_if_higher_hook,
                                                stop_if_lower_hook, stop_if_no_decrease_hook,
                                                stop_if_no_increase_hook)
  from jestimator.driver.estimator import Estimator
  from jestimator.driver.run_config import RunConfig
  from jestimator.driver.strategy import InputContext
  from jestimator.model.export_output import ClassificationOutput, PredictOutput, RegressionOutput
  from jestimator.model.mode_keys import ModeKeys
  from jestimator.model.model_fn import ModelFn
  from jestimator.model.padding import example_mask
  from jestimator.model.spec import EstimatorSpec
  from jestimator.model.steps import make_eval_step, make_predict_step, make_train_step
  from jestimator.state.train_state import TrainState
  from jestimator.state.warm_start import VocabInfo, WarmStartSettings
  from jestimator.driver.extenders import add_metrics
  from jestimator.driver.session_hooks import (CheckpointSaverHook, FinalOpsHook, NanTensorHook,
                                               SecondOrStepTimer, SessionRunArgs,
                                               SessionRunContext, SessionRunHook, SessionRunValues)

__version__ = '0.1.0'

# Sub-modules and sub-packages reachable as attributes (`jestimator.export`, `jestimator.hooks`).
_MODULES = frozenset({
    'canned', 'checkpoints', 'columns', 'compat', 'datasets', 'experimental', 'losses', 'distributed', 'early_stopping', 'estimator',
    'export', 'export_output', 'heads', 'hooks', 'inputs', 'io', 'metric_states', 'metrics',
    'mode_keys', 'model_fn', 'optimizers', 'padding', 'run_config', 'serve', 'serving', 'spec',
    'steps', 'strategy', 'summaries', 'summary', 'train_ops', 'train_state', 'warm_start'})

# Top-level names: `name -> module` that defines it.
_NAMES = {
    **dict.fromkeys(('BaselineClassifier', 'BaselineEstimator', 'BaselineRegressor',
                     'DNNClassifier', 'DNNEstimator', 'DNNLinearCombinedClassifier',
                     'DNNLinearCombinedEstimator', 'DNNLinearCombinedRegressor', 'DNNRegressor',
                     'LinearClassifier', 'LinearEstimator', 'LinearRegressor'),
                    'jestimator.canned'),
    **dict.fromkeys(('EvalSpec', 'TrainSpec', 'train_and_evaluate'),
                    'jestimator.distributed.training'),
    **dict.fromkeys(('make_early_stopping_hook', 'stop_if_higher_hook', 'stop_if_lower_hook',
                     'stop_if_no_decrease_hook', 'stop_if_no_increase_hook'),
                    'jestimator.driver.early_stopping'),
    'Estimator': 'jestimator.driver.estimator',
    'RunConfig': 'jestimator.driver.run_config',
    'InputContext': 'jestimator.driver.strategy',
    **dict.fromkeys(('ClassificationOutput', 'PredictOutput', 'RegressionOutput'),
                    'jestimator.model.export_output'),
    'ModeKeys': 'jestimator.model.mode_keys',
    'ModelFn': 'jestimator.model.model_fn',
    'example_mask': 'jestimator.model.padding',
    'EstimatorSpec': 'jestimator.model.spec',
    **dict.fromkeys(('make_eval_step', 'make_predict_step', 'make_train_step'),
                    'jestimator.model.steps'),
    'TrainState': 'jestimator.state.train_state',
    **dict.fromkeys(('VocabInfo', 'WarmStartSettings'), 'jestimator.state.warm_start'),
    'add_metrics': 'jestimator.driver.extenders',
    **dict.fromkeys(('CheckpointSaverHook', 'FinalOpsHook', 'NanTensorHook', 'SecondOrStepTimer',
                     'SessionRunArgs', 'SessionRunContext', 'SessionRunHook', 'SessionRunValues'),
                    'jestimator.driver.session_hooks'),
}


def __getattr__(name: str) -> Any:
  if name in _MODULES:
    value = importlib.import_module(f'{__name__}.{name}')
  elif name in _NAMES:
    value = getattr(importlib.import_module(_NAMES[name]), name)
  else:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__) | _MODULES)


# `jestimator.logging` is public but left out of __all__: `from jestimator import *` must not
# shadow the standard `logging` module.

__all__ = [
    'BaselineClassifier', 'BaselineEstimator', 'BaselineRegressor', 'DNNClassifier',
    'DNNEstimator', 'DNNLinearCombinedClassifier', 'DNNLinearCombinedEstimator',
    'DNNLinearCombinedRegressor', 'DNNRegressor', 'LinearClassifier', 'LinearEstimator',
    'LinearRegressor', 'canned', 'columns', 'compat', 'datasets', 'heads', 'optimizers',
    'ClassificationOutput', 'Estimator', 'EstimatorSpec', 'InputContext', 'ModeKeys', 'ModelFn',
    'PredictOutput', 'RegressionOutput', 'RunConfig', 'TrainState', 'VocabInfo', 'WarmStartSettings',
    'example_mask', 'hooks', 'inputs', 'summary', 'make_early_stopping_hook', 'make_eval_step',
    'make_predict_step', 'make_train_step', 'metrics', 'stop_if_higher_hook',
    'stop_if_lower_hook', 'stop_if_no_decrease_hook', 'stop_if_no_increase_hook',
    'EvalSpec', 'TrainSpec', 'train_and_evaluate', 'losses', 'train_ops',
    'experimental', 'add_metrics', 'CheckpointSaverHook', 'FinalOpsHook', 'NanTensorHook',
    'SecondOrStepTimer', 'SessionRunArgs', 'SessionRunContext', 'SessionRunHook',
    'SessionRunValues',
]
