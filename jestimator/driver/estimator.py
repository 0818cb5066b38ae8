"""The `Estimator`: one driver that trains, evaluates, predicts and exports any `model_fn`.

A thin facade over explicit parts, each usable on its own: the `CompiledModel` (model_fn,
strategy, compiled programs, traced specs), the `StateStore` (checkpoints, newest in-memory state,
restore) and the `InputPipeline` (validate -> host stage -> pad -> place). Each verb's loop
(`driver.train`, `driver.evaluate`, `driver.predict`) is imported when the verb first runs, so a
process that only serves exports never loads them.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from jestimator.driver import compilation_cache
from jestimator.driver.compiled import CompiledModel
from jestimator.driver.hooks import CheckpointSaverListener, Hook
from jestimator.driver.run_config import RunConfig
from jestimator.driver.strategy import SingleDevice
from jestimator.driver.summaries import Writers
from jestimator.model.model_fn import ModelFn
from jestimator.pipeline import host_stage as host_stage_lib
from jestimator.pipeline.source import InputPipeline
from jestimator.state import warm_start as warm_start_lib
from jestimator.state.store import StateStore

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
      features, e.g. with `columns.DenseFeatures(cols)(features)`. The columns build their host
      stage themselves (`jestimator.pipeline.host_stage.ColumnsProtocol`).
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
    if self._config.compilation_cache:
      compilation_cache.enable()
    model = ModelFn(model_fn, params, self._config)
    self._feature_columns = None if feature_columns is None else tuple(feature_columns)
    preprocessor = host_stage_lib.Preprocessor(
        host_stage_lib.from_feature_columns(self._feature_columns), label_transform)
    strategy = self._config.strategy or SingleDevice()
    self._compiled = CompiledModel(model, strategy, self._config.random_seed)
    self._store = StateStore(model_dir, self._config.keep_checkpoint_max, self._compiled,
                             warm_start_lib.as_settings(warm_start_from),
                             preprocessor.host_stage)
    self._pipeline = InputPipeline(preprocessor, strategy, model.takes_labels, model.params,
                                   self._config)
    # One event writer per directory, open across train / evaluate calls, flushed after each.
    self._writers = Writers()

  # -- properties ---------------------------------------------------------------------------------
  @property
  def model_dir(self) -> str:
    return self._config.model_dir

  @property
  def config(self) -> RunConfig:
    return self._config

  @property
  def params(self) -> Any:
    return copy.deepcopy(self._compiled.model.params)

  @property
  def model_fn(self) -> Callable:
    return self._compiled.model.fn

  @property
  def feature_columns(self) -> tuple | None:
    return self._feature_columns

  # -- the parts (for export, train_and_evaluate and hand-written drivers) -------------------------
  @property
  def compiled_model(self) -> CompiledModel:
    """The model_fn with its strategy, compiled programs and traced specs."""
    return self._compiled

  @property
  def state_store(self) -> StateStore:
    """Checkpoints in model_dir and the newest in-memory train state."""
    return self._store

  @property
  def input_pipeline(self) -> InputPipeline:
    """input_fn -> validated, host-staged, padded, placed batches."""
    return self._pipeline

  @property
  def summary_writers(self) -> Writers:
    """The open TensorBoard event writers, one per directory (flushed after every call)."""
    return self._writers

  # -- the verbs ----------------------------------------------------------------------------------
  def train(self, input_fn: Callable, hooks: Sequence[Hook] | None = None,
            steps: int | None = None, max_steps: int | None = None,
            saving_listeners: Sequence[CheckpointSaverListener] | None = None) -> 'Estimator':
    """Trains until `steps` more steps, `max_steps` in total, a hook's stop, or end of input.

    Resumes from the latest checkpoint in `model_dir` (model, optimizer, rng and, for the
    built-in input functions, the input position). Saves a checkpoint at the end and, while
    periodic checkpoints are on, one of the state it starts from (step 0 on a fresh run), as TF.
    """
    if steps is not None and max_steps is not None:
      raise ValueError('Can not provide both steps and max_steps.')
    steps, max_steps = _check_steps('steps', steps), _check_steps('max_steps', max_steps)
    listeners = list(saving_listeners or ())
    for listener in listeners:
      if not isinstance(listener, CheckpointSaverListener):
        raise TypeError('saving_listeners must be jestimator.hooks.CheckpointSaverListener '
                        f'instances, got {type(listener).__name__}')
    config = self._config
    if not config.saves_checkpoints:
      # TF's rule: with checkpointing disabled they would hear of the final save only. A
      # listener that asks for its own saves (overrides `wants_save`) still works.
      passive = [type(x).__name__ for x in listeners
                 if type(x).wants_save is CheckpointSaverListener.wants_save]
      if passive:
        raise ValueError(f'saving_listeners {passive} need periodic checkpoints, but RunConfig '
                         'disables them (save_checkpoints_steps and save_checkpoints_secs are '
                         'both None or 0); set one of them')
    from jestimator.driver import train as train_lib  # see the module docstring
    train_lib.train(self._compiled, self._store, self._pipeline, self._config, input_fn,
                    _check_hooks(hooks), steps, max_steps, listeners, self._writers)
    return self

  def memory_plan(self, input_fn: Callable) -> Any:
    """The per-device memory of the train step on `input_fn`'s first batch, from the compiled
    program, allocating nothing (no state is created, read or written): a
    `jestimator.driver.memory_plan.MemoryPlan` (`.summary()`, `.fits`, `.check()`). `train`
    computes and checks the same plan first when the strategy shards the state or
    `RunConfig.device_memory_bytes` is set.
    """
    from jestimator.driver import memory_plan as memory_plan_lib
    from jestimator.model.mode_keys import ModeKeys
    source = self._pipeline.open(input_fn, ModeKeys.TRAIN)
    try:
      first = source.first('the memory plan')
    finally:
      source.close()
    return memory_plan_lib.for_train(self._compiled, first.features, first.labels,
                                     self._config.device_memory_bytes)

  def evaluate(self, input_fn: Callable, steps: int | None = None,
               hooks: Sequence[Hook] | None = None, checkpoint_path: str | None = None,
               name: str | None = None) -> dict[str, Any]:
    """Evaluates to the end of input (or `steps` batches); returns metrics, `loss`, `global_step`.

    Uses the latest checkpoint (or `checkpoint_path`); every example counts exactly once. The
    results are written as TensorBoard scalars to `eval_dir(name)` at the global step.
    """
    steps = _check_steps('steps', steps)
    from jestimator.driver import evaluate as evaluate_lib  # see the module docstring
    return evaluate_lib.evaluate(self._compiled, self._store, self._pipeline, input_fn, steps,
                                 _check_hooks(hooks), checkpoint_path, self.eval_dir(name),
                                 self._writers, self._config.log_step_count_steps)

  def predict(self, input_fn: Callable, predict_keys: Sequence[str] | None = None,
              hooks: Sequence[Hook] | None = None, checkpoint_path: str | None = None,
              yield_single_examples: bool = True) -> Iterable[Any]:
    """Yields predictions: one dict per input row (or one per batch), on the latest checkpoint.

    Independent generators can be interleaved freely.
    """
    from jestimator.driver import predict as predict_lib  # see the module docstring
    return predict_lib.predict(self._compiled, self._store, self._pipeline, input_fn,
                               predict_keys, _check_hooks(hooks), checkpoint_path,
                               yield_single_examples, self._config.log_step_count_steps)

  def export_saved_model(self, export_dir_base: str, serving_input_fn: Callable | None = None,
                         assets_extra: Mapping[str, str] | None = None, as_text: bool = False,
                         checkpoint_path: str | None = None,
                         platforms: Sequence[str] | None = None) -> str:
    """Exports the model at the latest checkpoint (or `checkpoint_path`); returns the new folder.

    The arguments come in TF's order. `assets_extra` (`{destination: source file}`) copies files
    into the export's `assets.extra/`; `as_text` is accepted for TF's order and changes nothing
    (the metadata is always JSON text). Returns a `str` path (TF: bytes).

    Writes `export_dir_base/<timestamp>/`: one `jax.export` program per signature (batch size
    symbolic), the variables (safetensors), the feature columns' host stage and `signature.json`;
    `jestimator.export.load(path)` serves it with no model code. With feature columns the raw
    inputs come from them; otherwise pass
    `serving_input_fn=jestimator.export.build_raw_serving_input_fn({key: (dtype, shape)})`.
    `platforms` (default: the current backend) may name several, e.g. `('cpu', 'cuda')`.
    """
    from jestimator import export  # deferred: loads jax.export only when exporting
    if not isinstance(as_text, bool):
      raise TypeError(f'as_text must be a bool, got {as_text!r}')
    return export.export_estimator(self, export_dir_base, serving_input_fn, checkpoint_path,
                                   platforms, assets_extra)

  # -- checkpoints --------------------------------------------------------------------------------
  def latest_checkpoint(self) -> str | None:
    """Path of the newest complete checkpoint in model_dir, or None."""
    return self._store.latest_checkpoint()

  def get_variable_names(self) -> list[str]:
    """Names of the variables in the latest checkpoint (`params/...`, `global_step`, ...)."""
    return self._store.variable_names()

  def get_variable_value(self, name: str) -> np.ndarray:
    """The value of variable `name` in the latest checkpoint."""
    return self._store.variable_value(name)

  def eval_dir(self, name: str | None = None) -> str:
    """`model_dir/eval` or `model_dir/eval_<name>`."""
    return os.path.join(self.model_dir, 'eval' if not name else f'eval_{name}')


def _check_steps(name: str, value: Any) -> int | None:
  """None, or a positive int (bools, floats and strings are errors, not truncated or compared)."""
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f'{name} must be a positive int or None, got {type(value).__name__} '
                    f'{value!r}')
  if value <= 0:
    raise ValueError(f'Must specify {name} > 0, given: {value!r}')
  return int(value)


def _check_hooks(hooks) -> list[Hook]:
  hooks = list(hooks or ())
  for h in hooks:
    if not isinstance(h, Hook):
      raise TypeError(f'hooks must be jestimator.hooks.Hook instances, got {type(h).__name__}')
  return hooks

