"""jestimator: the tf.estimator abstraction (train / evaluate / predict / export) on JAX.

A `model_fn` builds a Flax network inline and returns an `EstimatorSpec`; the `Estimator` compiles
pure train / eval / predict steps once, owns the train state and writes Orbax checkpoints.
"""
import sys as _sys

from jestimator import logging  # noqa: I001  (first: it notes the root handlers before imports)

_root_handlers = logging.root_handlers()

from jestimator.driver import (early_stopping, estimator, hooks, run_config, strategy,  # noqa: E402
                               summaries)
from jestimator.model import (export_output, metric_states, metrics, mode_keys, model_fn,  # noqa: E402
                              padding, spec, steps, summary)
from jestimator.pipeline import inputs  # noqa: E402
from jestimator.state import checkpoints, train_state, warm_start  # noqa: E402

# The documented module paths (`jestimator.hooks`, `jestimator.run_config`, ...) name the modules
# that now live in the sub-packages; registered before the layers above the core import them.
for _module in (early_stopping, estimator, hooks, run_config, strategy, summaries, export_output,
                metric_states, metrics, mode_keys, model_fn, padding, spec, steps, summary, inputs,
                checkpoints, train_state, warm_start):
  _sys.modules[__name__ + '.' + _module.__name__.rsplit('.', 1)[1]] = _module
del _module

from jestimator.driver.early_stopping import (make_early_stopping_hook, stop_if_higher_hook,
                                       stop_if_lower_hook, stop_if_no_decrease_hook,
                                       stop_if_no_increase_hook)
from jestimator.driver.estimator import Estimator
from jestimator.model.export_output import ClassificationOutput, PredictOutput, RegressionOutput
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.model_fn import ModelFn
from jestimator.model.padding import example_mask
from jestimator.driver.run_config import RunConfig
from jestimator.model.spec import EstimatorSpec
from jestimator.model.steps import make_eval_step, make_predict_step, make_train_step
from jestimator.driver.strategy import InputContext
from jestimator.state.train_state import TrainState
from jestimator.state.warm_start import VocabInfo, WarmStartSettings

# The layers above the core, re-exported at the top level like tf.estimator's namespace.
from jestimator import columns, datasets  # noqa: E402
from jestimator import canned  # noqa: E402
from jestimator.canned import heads, optimizers  # noqa: E402
from jestimator.canned import (BaselineClassifier, BaselineEstimator, BaselineRegressor,  # noqa: E402
                               DNNClassifier, DNNEstimator, DNNLinearCombinedClassifier,
                               DNNLinearCombinedEstimator, DNNLinearCombinedRegressor,
                               DNNRegressor, LinearClassifier, LinearEstimator, LinearRegressor)

from jestimator.distributed.training import EvalSpec, TrainSpec, train_and_evaluate  # noqa: E402
from jestimator import losses  # noqa: E402  (tf.compat.v1.losses)
from jestimator import experimental  # noqa: E402  (tf.estimator.experimental)
from jestimator.driver.extenders import add_metrics  # noqa: E402
from jestimator.driver.session_hooks import (CheckpointSaverHook, FinalOpsHook,  # noqa: E402
                                             NanTensorHook, SecondOrStepTimer, SessionRunArgs,
                                             SessionRunContext, SessionRunHook, SessionRunValues)
from jestimator import compat  # noqa: E402  (tf.compat.v1's canned estimators)

# `import jestimator.heads` / `jestimator.optimizers` work as tf.estimator's head and optimizer
# namespaces do; the modules live in the canned layer.
_sys.modules[__name__ + '.heads'] = heads
_sys.modules[__name__ + '.optimizers'] = optimizers

# absl (through orbax) ran `logging.basicConfig()` during the imports above; undo it so the
# user's own `logging.basicConfig(level=...)` works (see jestimator.logging).
logging.undo_import_basic_config(_root_handlers)
del _root_handlers

__version__ = '0.1.0'

_LAZY_SUBMODULES = ('export', 'serve')  # documented, but loading jax.export / the server on use


def __getattr__(name: str):
  """PEP 562: `jestimator.export` and `jestimator.serve` work as attributes, imported on use."""
  if name in _LAZY_SUBMODULES:
    import importlib
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

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
    'EvalSpec', 'TrainSpec', 'train_and_evaluate', 'losses',
    'experimental', 'add_metrics', 'CheckpointSaverHook', 'FinalOpsHook', 'NanTensorHook',
    'SecondOrStepTimer', 'SessionRunArgs', 'SessionRunContext', 'SessionRunHook',
    'SessionRunValues',
]
