"""`StateStore`: where an Estimator's train state lives — checkpoints, the newest in-memory
state, and restoring either for training, evaluation, prediction or export."""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from jestimator.state import checkpoints as ckpt_lib
from jestimator.state import opt_state as opt_state_lib
from jestimator.state.train_state import TrainState

logger = logging.getLogger('jestimator')


class StateStore:
  """Checkpoints in `model_dir` plus the newest state this process holds on the device.

  Args:
    model_dir: the checkpoint directory.
    keep_checkpoint_max: checkpoints kept by a writer (None or 0: all).
    compiled: the `CompiledModel` (fresh variables, abstract shapes, the strategy's placement).
    warm_start: `WarmStartSettings` used when no checkpoint exists yet, or None.
    host_stage: the input pipeline's `HostStage` (or None): every checkpoint records what it needs
      to check on restore (e.g. which hash a column used), and restoring checks it.
    eval_variables: the name of a train op's extra variables (`train_ops.ema(name=...)`) that
      evaluate, predict and export use in place of the trained parameters; None: the parameters.
  """

  def __init__(self, model_dir: str, keep_checkpoint_max: int | None, compiled: Any,
               warm_start: Any = None, host_stage: Any = None,
               eval_variables: str | None = None):
    self.model_dir = model_dir
    self.eval_variables = eval_variables
    self.host_stage = host_stage
    self.keep_checkpoint_max = keep_checkpoint_max
    self.compiled = compiled
    self.warm_start = warm_start
    self._newest: TrainState | None = None   # placed; set after train() and while listeners run
    self._restored: dict[tuple[str, str], Any] = {}
    self._raw: tuple[str, dict[str, np.ndarray]] | None = None

  # -- the newest in-memory state ------------------------------------------------------------------
  @property
  def newest(self) -> TrainState | None:
    """The newest placed train state this process holds (None when it holds none)."""
    return self._newest

  def remember(self, state: TrainState | None) -> None:
    """Holds `state` (the one just checkpointed) so the next verb needs no reload; None drops it."""
    self._newest = state

  # -- checkpoints ----------------------------------------------------------------------------------
  def reader(self) -> ckpt_lib.Checkpointer:
    return ckpt_lib.Checkpointer(self.model_dir, read_only=True)

  def writer(self) -> ckpt_lib.Checkpointer:
    return ckpt_lib.Checkpointer(self.model_dir, self.keep_checkpoint_max)

  def latest_checkpoint(self) -> str | None:
    """Path of the newest complete checkpoint in model_dir, or None."""
    ckpt = self.reader()
    step = ckpt.latest_step()
    return None if step is None else ckpt.path(step)

  def verified_latest_step(self, ckpt: ckpt_lib.Checkpointer) -> int | None:
    """The newest checkpoint whose arrays all read back (training resumes from it), or None.

    A newer step with damaged array data (flipped or truncated bytes) is skipped with a warning
    naming it, and left on disk. The step this store just wrote is not read again.
    """
    while True:
      step = ckpt.latest_step()
      newest = self._newest
      if step is None or (newest is not None and int(newest.step) == step):
        return step
      try:
        ckpt.verify(step)
        return step
      except ckpt_lib.DamagedCheckpointError as e:
        _warn_skipped(e)

  def save(self, ckpt: ckpt_lib.Checkpointer, state: TrainState, step: int,
           position: dict | None) -> None:
    """Starts saving `state` (at `step`, its step) with the input `position`; `ckpt.wait()`
    finishes."""
    host = self.compiled.strategy.host_state(state)
    ckpt.save(step, host.variables, {'opt_state': host.opt_state, 'rng': host.rng},
              {'input_state': position, 'host_stage': self._host_record()})
    logger.info('Saving checkpoint for step %d into %s', step, ckpt.path(step))

  def train_state(self, ckpt: ckpt_lib.Checkpointer, features, labels) -> TrainState:
    """The placed state to continue training from: the newest held, the latest checkpoint, or a
    fresh (possibly warm-started) one."""
    latest = ckpt.latest_step()
    strategy = self.compiled.strategy
    newest = self._newest
    if newest is not None and latest is not None and int(newest.step) == latest:
      return newest  # this object wrote the latest checkpoint: no reload
    if latest is None:
      return strategy.put_state(self.compiled.create_train_state(features, labels,
                                                                 self.warm_start))
    # The columns' record first: a changed vocabulary or hash is the error to report, not the
    # variable shapes it changed.
    self._check_host_record(ckpt.meta(latest), ckpt.path(latest))
    abstract = self.compiled.abstract_train_state(features, labels)
    # A changed train op changes the optimizer state's structure: name the sub-update.
    opt_state_lib.check_compatible(ckpt.train_metadata(latest), abstract.opt_state,
                                   ckpt.path(latest))
    variables, train, meta = ckpt.restore(latest, abstract.variables,
                                          {'opt_state': abstract.opt_state, 'rng': abstract.rng})
    variables = dict(variables)
    params = variables.pop('params')
    state = abstract.replace(step=np.int32(meta['global_step']), params=params,
                             collections=variables, opt_state=train['opt_state'],
                             rng=train['rng'])
    logger.info('Restored checkpoint %s', ckpt.path(latest))
    return strategy.put_state(state)

  def variables_for(self, features, labels, mode: str, checkpoint_path: str | None = None
                    ) -> tuple[Any, int, str | None]:
    """`(placed variables, global_step, checkpoint path or None)` for evaluate / predict / export.

    The latest checkpoint (or `checkpoint_path`); without any, fresh variables at step 0, as TF.
    """
    strategy = self.compiled.strategy
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
      ckpt = self.reader()
      step = ckpt.latest_step()
    if step is None:
      # TF only logged this at INFO, so a mistyped model_dir silently gave random predictions.
      logger.warning(
          'No checkpoint in model_dir %r (empty, or a mistyped path?): running mode %r with '
          'freshly initialized variables%s, as tf.estimator did. Train first, or pass '
          'checkpoint_path=', self.model_dir, mode, '' if self.warm_start is None else
          f' warm-started from {self.warm_start.ckpt_to_initialize_from!r}')
      variables = self.compiled.fresh_variables(features, labels, mode, self.warm_start)
      return strategy.put_state(variables), 0, None
    newest = self._newest
    if checkpoint_path is None and newest is not None and int(newest.step) == step:
      return self._chosen(newest.variables, lambda: newest.opt_state), step, ckpt.path(step)
    key = (ckpt.path(step), mode)
    if key not in self._restored:
      abstract = self.compiled.abstract_variables(features, labels, mode)
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
      variables = self._chosen(variables, lambda: ckpt.raw_train(step)['opt_state'])
      self._restored[key] = strategy.put_state(variables)
    return self._restored[key], step, ckpt.path(step)

  def _chosen(self, variables: Any, opt_state: Any) -> Any:
    """`variables` with the parameters `eval_variables` names swapped in from the train op's
    state (`opt_state()` reads it: the live one, or the checkpoint's); as is without a choice."""
    if self.eval_variables is None:
      return variables
    return opt_state_lib.swap_in(variables, opt_state(), self.eval_variables)

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
  def latest_or_raise(self) -> tuple[ckpt_lib.Checkpointer, int]:
    ckpt = self.reader()
    step = ckpt.latest_step()
    if step is None:
      raise ValueError(f'model_dir {self.model_dir!r} has no checkpoint yet; train first')
    return ckpt, step

  def variable_names(self) -> list[str]:
    """Names of the variables in the latest checkpoint (`params/...`, `global_step`, ...)."""
    ckpt, step = self.latest_or_raise()
    return sorted(list(ckpt.variable_metadata(step)) + ['global_step'])

  def variable_value(self, name: str) -> np.ndarray:
    """The value of variable `name` in the latest checkpoint."""
    ckpt, step = self.latest_or_raise()
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


def _warn_skipped(e: ckpt_lib.DamagedCheckpointError) -> None:
  """Logs that the step of `e` is skipped as damaged (it stays on disk)."""
  logger.warning('Checkpoint %s (step %d) is damaged (%s): using the newest older intact '
                 'checkpoint instead; the damaged one is left in place', e.path, e.step, e.reason)
