"""The `Estimator`: one driver that trains, evaluates, predicts and exports any `model_fn`."""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np

from jestimator.driver import evaluate as _inference
from jestimator.driver import train as _loops
from jestimator.state import checkpoints as ckpt_lib
from jestimator.state import warm_start as warm_start_lib
from jestimator.pipeline.batches import HostStage
from jestimator.driver.hooks import CheckpointSaverListener, Hook
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.model_fn import ModelFn
from jestimator.driver.run_config import RunConfig
from jestimator.driver.strategy import SingleDevice
from jestimator.state.train_state import TrainState

logger = logging.getLogger('jestimator')


class Estimator:
  """Trains, evaluates and predicts with a `model_fn`, as `tf.estimator.Estimator`.

  Args:
    model_fn: `model_fn(features, labels, mode, params, config) -> EstimatorSpec`, building its
      network with Flax linen layers inline; only the arguments it names are passed.
    model_dir: where checkpoints and event files live; None uses `config.model_dir`, else a new
      temporary directory. Existing contents are never deleted.
    config: a `RunConfig`.
    params: hyper-parameters passed to model_fn as `params`.
    warm_start_from: a checkpoint directory/path or `WarmStartSettings`, used when `model_dir`
      has no checkpoint yet.
    feature_columns: feature columns (`jestimator.columns`) whose host stage turns each raw batch
      (strings allowed) into numbers before the device; the model_fn then reads the transformed
      features, e.g. with `columns.DenseFeatures(cols)(features)`.
    label_transform: a host-side function applied to every batch of labels before the device,
      e.g. `head.labels_to_ids` to map string labels through a `label_vocabulary`.

  Example:
    def model_fn(features, labels, mode):
      pred = nn.Dense(1)(features['x'])[:, 0]
      loss = jnp.mean((pred - labels) ** 2)
      return EstimatorSpec(mode, predictions={'y': pred}, loss=loss, optimizer=optax.adam(1e-2))

    est = Estimator(model_fn, model_dir='/tmp/m')
    est.train(numpy_input_fn({'x': x}, y, num_epochs=None, shuffle=True), max_steps=200)
    print(est.evaluate(numpy_input_fn({'x': x}, y, shuffle=False)))
  """

  def __init__(self, model_fn: Callable, model_dir: str | None = None,
               config: RunConfig | None = None, params: Any = None,
               warm_start_from: Any = None, feature_columns: Sequence[Any] | None = None,
               label_transform: Callable | None = None):
    config = config or RunConfig()
    if not isinstance(config, RunConfig):
      raise TypeError(f'config must be a jestimator.RunConfig, got {type(config).__name__}')
    if model_dir == '':
      raise ValueError('model_dir must not be empty')
    if model_dir and config.model_dir and os.path.abspath(model_dir) != os.path.abspath(
        config.model_dir):
      raise ValueError(f'model_dir={model_dir!r} and config.model_dir={config.model_dir!r} '
                       'disagree; set only one, or the same')
    model_dir = model_dir or config.model_dir
    if model_dir is None:
      model_dir = tempfile.mkdtemp(prefix='jestimator_')
      logger.warning('Using temporary folder as model directory: %s', model_dir)
    self._config = config.replace(model_dir=model_dir)
    self._model = ModelFn(model_fn, params, self._config)
    self._strategy = self._config.strategy or SingleDevice()
    self._warm_start = warm_start_lib.as_settings(warm_start_from)
    self._feature_columns = None if feature_columns is None else tuple(feature_columns)
    self._host = HostStage(_columns_stage(self._feature_columns), label_transform)
    self._state: TrainState | None = None   # the newest state, on device, if this object trained
    self._compiled: dict[str, Callable] = {}
    self._zero_states: dict[Any, Any] = {}
    self._specs: dict[str, Any] = {}

  # -- properties ---------------------------------------------------------------------------------
  @property
  def model_dir(self) -> str:
    return self._config.model_dir

  @property
  def config(self) -> RunConfig:
    return self._config

  @property
  def params(self) -> Any:
    import copy
    return copy.deepcopy(self._model.params)

  @property
  def model_fn(self) -> Callable:
    return self._model.fn

  @property
  def feature_columns(self) -> tuple | None:
    return self._feature_columns

  # -- the verbs ----------------------------------------------------------------------------------
  def train(self, input_fn: Callable, hooks: Sequence[Hook] | None = None,
            steps: int | None = None, max_steps: int | None = None,
            saving_listeners: Sequence[CheckpointSaverListener] | None = None) -> 'Estimator':
    """Trains until `steps` more steps, `max_steps` in total, a hook's stop, or end of input.

    Resumes from the latest checkpoint in `model_dir` (model, optimizer, rng and, for the
    built-in input functions, the input position). Saves a checkpoint at the end.
    """
    if steps is not None and max_steps is not None:
      raise ValueError('Can not provide both steps and max_steps.')
    for name, value in (('steps', steps), ('max_steps', max_steps)):
      if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
        raise ValueError(f'Must specify {name} > 0, given: {value!r}')
    _loops.train(self, input_fn, _check_hooks(hooks), steps, max_steps,
                 list(saving_listeners or ()))
    return self

  def evaluate(self, input_fn: Callable, steps: int | None = None,
               hooks: Sequence[Hook] | None = None, checkpoint_path: str | None = None,
               name: str | None = None) -> dict[str, Any]:
    """Evaluates to the end of input (or `steps` batches); returns metrics, `loss`, `global_step`.

    Uses the latest checkpoint (or `checkpoint_path`); every example counts exactly once. The
    results are written as TensorBoard scalars to `eval_dir(name)` at the global step.
    """
    if steps is not None and steps <= 0:
      raise ValueError(f'Must specify steps > 0, given: {steps!r}')
    return _inference.evaluate(self, input_fn, steps, _check_hooks(hooks), checkpoint_path, name)

  def predict(self, input_fn: Callable, predict_keys: Sequence[str] | None = None,
              hooks: Sequence[Hook] | None = None, checkpoint_path: str | None = None,
              yield_single_examples: bool = True) -> Iterable[Any]:
    """Yields predictions: one dict per input row (or one per batch), on the latest checkpoint.

    Independent generators can be interleaved freely.
    """
    return _inference.predict(self, input_fn, predict_keys, _check_hooks(hooks), checkpoint_path,
                          yield_single_examples)

  def export_saved_model(self, export_dir_base: str, serving_input_fn: Callable | None = None,
                         checkpoint_path: str | None = None,
                         platforms: Sequence[str] | None = None) -> str:
    """Exports the model at the latest checkpoint (or `checkpoint_path`); returns the new folder.

    Writes `export_dir_base/<timestamp>/`: one `jax.export` program per signature (batch size
    symbolic), the variables (safetensors), the feature columns' host stage and `signature.json`;
    `jestimator.export.load(path)` serves it with no model code. With feature columns the raw
    inputs come from them; otherwise pass
    `serving_input_fn=jestimator.export.build_raw_serving_input_fn({key: (dtype, shape)})`.
    `platforms` (default: the current backend) may name several, e.g. `('cpu', 'cuda')`.
    """
    from jestimator import export  # deferred: loads jax.export only when exporting
    return export.export_estimator(self, export_dir_base, serving_input_fn, checkpoint_path,
                                   platforms)

  # -- checkpoints --------------------------------------------------------------------------------
  def latest_checkpoint(self) -> str | None:
    """Path of the newest complete checkpoint in model_dir, or None."""
    ckpt = ckpt_lib.Checkpointer(self.model_dir, read_only=True)
    step = ckpt.latest_step()
    return None if step is None else ckpt.path(step)

  def get_variable_names(self) -> list[str]:
    """Names of the variables in the latest checkpoint (`params/...`, `global_step`, ...)."""
    ckpt, step = self._latest_or_raise()
    return sorted(list(ckpt.variable_metadata(step)) + ['global_step'])

  def get_variable_value(self, name: str) -> np.ndarray:
    """The value of variable `name` in the latest checkpoint."""
    ckpt, step = self._latest_or_raise()
    if name == 'global_step':
      return np.asarray(step, np.int64)
    cached = getattr(self, '_raw_variables', None)
    if cached is None or cached[0] != ckpt.path(step):
      # Reading every variable one by one should not restore the checkpoint each time.
      cached = self._raw_variables = (ckpt.path(step), ckpt.restore_raw_variables(step))
    values = cached[1]
    if name not in values:
      raise ValueError(f'no variable {name!r} in {ckpt.path(step)}; names are '
                       f'{sorted(values)[:20]}')
    return values[name]

  def eval_dir(self, name: str | None = None) -> str:
    """`model_dir/eval` or `model_dir/eval_<name>`."""
    return os.path.join(self.model_dir, 'eval' if not name else f'eval_{name}')

  def _latest_or_raise(self):
    ckpt = ckpt_lib.Checkpointer(self.model_dir, read_only=True)
    step = ckpt.latest_step()
    if step is None:
      raise ValueError(f'model_dir {self.model_dir!r} has no checkpoint yet; train first')
    return ckpt, step

  # -- state --------------------------------------------------------------------------------------
  def _init_variables(self, features, labels, mode: str):
    rng = jax.random.PRNGKey(self._config.random_seed)
    init_rng, _ = jax.random.split(rng)
    key = ('init', mode)
    if key not in self._compiled:
      model = self._model
      self._compiled[key] = jax.jit(lambda r, f, l: model.init(r, f, l, mode))
    return self._compiled[key](init_rng, features, labels)

  def _spec(self, mode: str, variables, features, labels):
    """The static parts of the model_fn's spec in `mode` (optimizer, hooks, string outputs)."""
    if mode not in self._specs:
      self._specs[mode] = self._model.trace_spec(variables, features, labels, mode)
    return self._specs[mode]

  def _create_train_state(self, features, labels) -> TrainState:
    variables = self._init_variables(features, labels, ModeKeys.TRAIN)
    if self._warm_start is not None:
      variables, names = warm_start_lib.warm_start(variables, self._warm_start)
      logger.info('Warm-started %d variables from %s', len(names),
                  self._warm_start.ckpt_to_initialize_from)
    spec = self._spec(ModeKeys.TRAIN, variables, features, labels)
    _, train_rng = jax.random.split(jax.random.PRNGKey(self._config.random_seed))
    return TrainState.create(variables, spec.optimizer, train_rng)

  def _abstract_train_state(self, features, labels) -> TrainState:
    def create():
      variables = self._model.init(jax.random.PRNGKey(0), features, labels, ModeKeys.TRAIN)
      spec = self._spec(ModeKeys.TRAIN, variables, features, labels)
      return TrainState.create(variables, spec.optimizer, jax.random.PRNGKey(0))
    return jax.eval_shape(create)


def _check_hooks(hooks) -> list[Hook]:
  hooks = list(hooks or ())
  for h in hooks:
    if not isinstance(h, Hook):
      raise TypeError(f'hooks must be jestimator.hooks.Hook instances, got {type(h).__name__}')
  return hooks


def _columns_stage(feature_columns):
  """The feature columns' host stage (the one place the core reaches the columns package).

  An empty list keeps only numeric raw features (strings never reach the device).
  """
  if feature_columns is None:
    return None
  if not feature_columns:
    return lambda raw: {}
  from jestimator import columns  # deferred: columns build on the core, not the reverse
  return columns.host_stage(list(feature_columns))
