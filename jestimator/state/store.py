"""`StateStore`: where an Estimator's train state lives — checkpoints, the newest in-memory
state, and restoring either for training, evaluation, prediction or export.

Its interface is narrow: evaluate / predict / export ask for `variables_for(...)`; a `train()` call
opens `training()`, a `TrainingCheckpoints` that reads the state training starts from and owns the
one checkpoint writer until it is closed. No Orbax object leaves this module.

The newest state: after `train()` the store keeps the state of its final checkpoint on the device,
so the next verb needs no reload. While training, it serves the state of its latest save to
whoever asks (a saving listener's `evaluate()`) for as long as the train loop still holds that
state: the store keeps only a weak reference to it, so it never keeps a second copy alive.
"""
from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Protocol

import jax
import numpy as np

from jestimator.state import checkpoints as ckpt_lib
from jestimator.state.train_state import TrainState
from jestimator.state.warm_start import WarmStartSettings

logger = logging.getLogger('jestimator')


class StatePlacement(Protocol):
  """How states move between the host and the compiled steps (a `Strategy`)."""

  def put_state(self, state: Any) -> Any:
    """Places a train state (or variables) for the compiled steps."""

  def host_state(self, state: Any) -> Any:
    """The state as checkpoints hold it."""

  def state_shardings(self, tree: Any) -> Any | None:
    """Per-leaf shardings when the strategy shards the state (restores go straight into them),
    else None."""


class ModelStates(Protocol):
  """What the store needs of the compiled model (`driver.compiled.CompiledModel`): fresh and
  abstract states for a batch, and the strategy placing them."""

  @property
  def strategy(self) -> StatePlacement: ...

  def create_train_state(self, features: Any, labels: Any,
                         warm_start: WarmStartSettings | None = None) -> TrainState: ...

  def abstract_train_state(self, features: Any, labels: Any) -> TrainState: ...

  def fresh_variables(self, features: Any, labels: Any, mode: str,
                      warm_start: WarmStartSettings | None = None) -> Any: ...

  def abstract_variables(self, features: Any, labels: Any, mode: str) -> Any: ...


class CheckpointRecord(Protocol):
  """What a host stage records in every checkpoint and checks on restore
  (`pipeline.host_stage.HostStage`)."""

  def checkpoint_record(self) -> Any: ...

  def check_checkpoint_record(self, record: Any, where: str) -> None: ...


class StateStore:
  """Checkpoints in `model_dir` plus the newest state this process holds on the device.

  Args:
    model_dir: the checkpoint directory.
    keep_checkpoint_max: checkpoints kept by a writer (None or 0: all).
    model: the compiled model (fresh variables, abstract shapes, the strategy's placement).
    warm_start: `WarmStartSettings` used when no checkpoint exists yet, or None.
    host_stage: the input pipeline's host stage (or None): every checkpoint records what it needs
      to check on restore (e.g. which hash a column used), and restoring checks it.
  """

  def __init__(self, model_dir: str, keep_checkpoint_max: int | None, model: ModelStates,
               warm_start: WarmStartSettings | None = None,
               host_stage: CheckpointRecord | None = None):
    self.model_dir = model_dir
    self.host_stage = host_stage
    self.keep_checkpoint_max = keep_checkpoint_max
    self.model = model
    self.warm_start = warm_start
    self._held: TrainState | None = None   # placed: the final state of the last train()
    self._saved: weakref.ref[TrainState] | None = None   # the state of the latest save
    self._restored: dict[tuple[str, str], Any] = {}
    self._raw: tuple[str, dict[str, np.ndarray]] | None = None

  # -- the newest in-memory state ------------------------------------------------------------------
  @property
  def newest(self) -> TrainState | None:
    """The newest placed train state this process holds, whose step is that of a checkpoint it
    wrote (None when it holds none)."""
    state = self._held if self._held is not None else (
        None if self._saved is None else self._saved())
    if state is not None and _donated(state):
      return None  # a sharded step consumed it (its buffers were donated to the next state)
    return state

  def _newest_at(self, step: int | None) -> TrainState | None:
    """The newest state when it is that of checkpoint `step`, else None."""
    newest = self.newest
    return newest if step is not None and newest is not None and int(newest.step) == step else None

  # -- training ------------------------------------------------------------------------------------
  def training(self) -> 'TrainingCheckpoints':
    """The checkpoints of one `train()` call; close it when the call ends (also on errors)."""
    return TrainingCheckpoints(self)

  def _reader(self) -> ckpt_lib.Checkpointer:
    return ckpt_lib.Checkpointer(self.model_dir, read_only=True)

  def latest_checkpoint(self) -> str | None:
    """Path of the newest complete checkpoint in model_dir, or None."""
    ckpt = self._reader()
    step = ckpt.latest_step()
    return None if step is None else ckpt.path(step)

  def _verified_latest_step(self, ckpt: ckpt_lib.Checkpointer) -> int | None:
    """The newest checkpoint whose arrays all read back (training resumes from it), or None.

    A newer step with damaged array data (flipped or truncated bytes) is skipped with a warning
    naming it, and left on disk. The step this store just wrote is not read again.
    """
    while True:
      step = ckpt.latest_step()
      if step is None or self._newest_at(step) is not None:
        return step
      try:
        ckpt.verify(step)
        return step
      except ckpt_lib.DamagedCheckpointError as e:
        _warn_skipped(e)

  def variables_for(self, features, labels, mode: str, checkpoint_path: str | None = None
                    ) -> tuple[Any, int, str | None]:
    """`(placed variables, global_step, checkpoint path or None)` for evaluate / predict / export.

    The latest checkpoint (or `checkpoint_path`); without any, fresh variables at step 0, as TF.
    """
    strategy = self.model.strategy
    if checkpoint_path is not None:
      ckpt = ckpt_lib.Checkpointer(os.path.dirname(os.path.abspath(checkpoint_path)),
                                   read_only=True)
      step = ckpt_lib.step_from_path(checkpoint_path)
      if not os.path.isdir(checkpoint_path):
        raise ValueError(f'checkpoint_path {checkpoint_path!r} does not exist')
      error = ckpt_lib.step_error(ckpt.path(step))
      if error is not None:
        raise ValueError(f'checkpoint_path {checkpoint_path!r} is not a complete checkpoint: '
                         f'{error}')
    else:
      ckpt = self._reader()
      step = ckpt.latest_step()
    if step is None:
      # TF only logged this at INFO, so a mistyped model_dir silently gave random predictions.
      logger.warning(
          'No checkpoint in model_dir %r (empty, or a mistyped path?): running mode %r with '
          'freshly initialized variables%s, as tf.estimator did. Train first, or pass '
          'checkpoint_path=', self.model_dir, mode, '' if self.warm_start is None else
          f' warm-started from {self.warm_start.ckpt_to_initialize_from!r}')
      variables = self.model.fresh_variables(features, labels, mode, self.warm_start)
      return strategy.put_state(variables), 0, None
    newest = self._newest_at(step)
    if checkpoint_path is None and newest is not None:
      return newest.variables, step, ckpt.path(step)
    key = (ckpt.path(step), mode)
    if key not in self._restored:
      abstract = _placed(strategy, self.model.abstract_variables(features, labels, mode))
      while True:
        try:
          self._check_host_record(ckpt.meta(step), ckpt.path(step))
          variables, _, meta = ckpt.restore(step, abstract)
          break
        except ckpt_lib.DamagedCheckpointError as e:
          # Damaged data, or deleted by a concurrent trainer's retention after it was chosen:
          # the newest intact step then (never an explicitly asked-for one).
          if checkpoint_path is not None:
            raise
          if not e.gone:
            _warn_skipped(e)
          step = ckpt.latest_step()
          if step is None:
            raise
          key = (ckpt.path(step), mode)
      # Keep only the newest checkpoint asked for, but per mode, so that alternating evaluate()
      # and predict() calls do not reload it from disk every time.
      for old in [k for k in self._restored if k[0] != key[0]]:
        del self._restored[old]
      self._restored[key] = strategy.put_state(variables)
    return self._restored[key], step, ckpt.path(step)

  def _host_record(self) -> Any:
    return None if self.host_stage is None else self.host_stage.checkpoint_record()

  def _check_host_record(self, meta: dict, where: str) -> None:
    """Raises ValueError when the host stage cannot use a checkpoint with this `meta`.

    Every checkpoint has the 'host_stage' key; a checkpoint without it predates the records
    (the stage then decides what that implies, e.g. the legacy string hash).
    """
    if self.host_stage is None or ('host_stage' in meta and meta['host_stage'] is None):
      return
    self.host_stage.check_checkpoint_record(meta.get('host_stage'), where)

  # -- inspection -----------------------------------------------------------------------------------
  def _latest_or_raise(self) -> tuple[ckpt_lib.Checkpointer, int]:
    ckpt = self._reader()
    step = ckpt.latest_step()
    if step is None:
      raise ValueError(f'model_dir {self.model_dir!r} has no checkpoint yet; train first')
    return ckpt, step

  def variable_names(self) -> list[str]:
    """Names of the variables in the latest checkpoint (`params/...`, `global_step`, ...)."""
    ckpt, step = self._latest_or_raise()
    return sorted(list(ckpt.variable_metadata(step)) + ['global_step'])

  def variable_value(self, name: str) -> np.ndarray:
    """The value of variable `name` in the latest checkpoint."""
    ckpt, step = self._latest_or_raise()
    if name == 'global_step':
      return np.asarray(step, np.int64)
    if self._raw is None or self._raw[0] != ckpt.path(step):
      # Reading every variable one by one should not restore the checkpoint each time.
      self._raw = (ckpt.path(step), ckpt.restore_raw_variables(step))
    values = self._raw[1]
    if name not in values:
      raise ValueError(f'no variable {name!r} in {ckpt.path(step)}; names are '
                       f'{sorted(values)[:20]}')
    return values[name]


class TrainingCheckpoints:
  """The checkpoints of one `train()` call (`StateStore.training()`).

  On opening it reads where training starts: `start_step` (the newest checkpoint that reads
  back, or None) and its `start_meta`. `train_state()` gives the placed state to start from.
  `start_writing()` (once the trainer holds model_dir) opens the one writer, which removes what a
  killed writer left; `save()` starts an asynchronous save, `wait()` finishes it, and `close()`
  finishes the last one and releases the writer. A `TrainingCheckpoints` opens nothing on disk
  before `start_writing()`, so input or model errors found before it leave no trace.
  """

  def __init__(self, store: StateStore):
    self._store = store
    self._ckpt = store._reader()
    self._writing = False
    self.start_step: int | None = store._verified_latest_step(self._ckpt)
    self.start_meta: dict[str, Any] = (
        self._ckpt.meta(self.start_step) if self.start_step is not None else {})

  @property
  def model_dir(self) -> str:
    return self._store.model_dir

  def unreadable_steps(self) -> dict[int, str]:
    """`{step: error}` of the step folders in model_dir that are not intact checkpoints."""
    return self._ckpt.unreadable_steps()

  def latest_step(self) -> int | None:
    """The newest intact checkpoint's step on disk now (another trainer may have saved one)."""
    return self._ckpt.latest_step()

  def path(self, step: int) -> str:
    return self._ckpt.path(step)

  def train_state(self, features, labels) -> TrainState:
    """The placed state to continue training from: the one the store holds when it is that of
    the latest checkpoint, else the latest checkpoint, else a fresh (possibly warm-started) one."""
    store = self._store
    latest = self._ckpt.latest_step()
    strategy = store.model.strategy
    newest = store._newest_at(latest)
    if newest is not None:
      # This store wrote the latest checkpoint: no reload. From here the train loop holds it;
      # the store keeps no second reference that would outlive the loop's next step.
      store._held, store._saved = None, weakref.ref(newest)
      return newest
    store._held = store._saved = None  # an older state than the one training starts from
    if latest is None:
      return strategy.put_state(store.model.create_train_state(features, labels,
                                                               store.warm_start))
    # The columns' record first: a changed vocabulary or hash is the error to report, not the
    # variable shapes it changed.
    store._check_host_record(self._ckpt.meta(latest), self._ckpt.path(latest))
    abstract = _placed(strategy, store.model.abstract_train_state(features, labels))
    variables, train, meta = self._ckpt.restore(
        latest, abstract.variables, {'opt_state': abstract.opt_state, 'rng': abstract.rng})
    variables = dict(variables)
    params = variables.pop('params')
    state = abstract.replace(step=np.int32(meta['global_step']), params=params,
                             collections=variables, opt_state=train['opt_state'],
                             rng=train['rng'])
    logger.info('Restored checkpoint %s', self._ckpt.path(latest))
    return strategy.put_state(state)

  def start_writing(self) -> None:
    """Opens the writer (creating model_dir); call once the trainer holds model_dir."""
    store = self._store
    self._ckpt = ckpt_lib.Checkpointer(store.model_dir, store.keep_checkpoint_max)
    self._writing = True

  def save(self, state: TrainState, step: int, position: dict | None) -> None:
    """Starts saving `state` (at `step`, its step) with the input `position`; `wait()`
    finishes. Until the next save the store serves `state` as the newest, while the caller
    holds it."""
    if not self._writing:
      raise RuntimeError('TrainingCheckpoints.save before start_writing()')
    store = self._store
    host = store.model.strategy.host_state(state)
    self._ckpt.save(step, host.variables, {'opt_state': host.opt_state, 'rng': host.rng},
                    {'input_state': position, 'host_stage': store._host_record()})
    store._held, store._saved = None, weakref.ref(state)
    logger.info('Saving checkpoint for step %d into %s', step, self._ckpt.path(step))

  def wait(self) -> None:
    """Waits for the save under way (an OSError naming the step if it failed)."""
    self._ckpt.wait()

  def close(self) -> None:
    """Finishes the last save and releases the writer. The state of the latest save, when the
    caller still holds it (the train loop's final state), stays with the store for the next
    verb."""
    store = self._store
    try:
      self._ckpt.wait()
    finally:
      if self._writing:
        self._ckpt.close()
      store._held = store.newest
      store._saved = None


def _placed(strategy: StatePlacement, abstract: Any) -> Any:
  """Restore targets in the strategy's shardings when it shards the state (Orbax then reads
  each device's part straight into place, whatever device count wrote the checkpoint); else
  unchanged (restored whole, then placed by `put_state`)."""
  shardings = strategy.state_shardings(abstract)
  if shardings is None:
    return abstract
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
                      shardings)


def _donated(state: TrainState) -> bool:
  """Whether the arrays of `state` were donated to a later step (deleted)."""
  return any(isinstance(a, jax.Array) and a.is_deleted() for a in jax.tree.leaves(state.params))


def _warn_skipped(e: ckpt_lib.DamagedCheckpointError) -> None:
  """Logs that the step of `e` is skipped as damaged (it stays on disk)."""
  logger.warning('Checkpoint %s (step %d) is damaged (%s): using the newest older intact '
                 'checkpoint instead; the damaged one is left in place', e.path, e.step, e.reason)
