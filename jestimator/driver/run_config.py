"""`RunConfig`: how the Estimator runs (checkpoint cadence, logging, seed, loops, strategy)."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jestimator.model.errors import WrongTypeError

_DEFAULT_SAVE_SECS = 600


class _Unset:
  def __repr__(self):
    return '<600 when save_checkpoints_steps is not set>'


_UNSET = _Unset()


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Run settings, as `tf.estimator.RunConfig` (immutable; change with `replace`).

  Attributes:
    model_dir: where checkpoints and event files go; must agree with `Estimator(model_dir=...)`.
    seed: the root of all randomness (init, dropout, shuffling); an integer. None means 0: runs
      are reproducible by default (TF drew a random seed).
    tf_random_seed: TF's name for `seed`, accepted so TF code ports unchanged; both name the
      same value (giving both with different values is a ValueError).
    save_summary_steps: training `loss` summary cadence; 0 or None writes no training summaries
      (as TF).
    save_checkpoints_steps / save_checkpoints_secs: checkpoint cadence; at most one may be set;
      with neither, every 600 s; 0 or None turns periodic checkpoints off (as TF). While they are
      on, `train` saves one when it starts (at step 0 on a fresh run), as TF's
      `CheckpointSaverHook`. A checkpoint is always written at the end of `train`.
    keep_checkpoint_max: checkpoints kept; None or 0 keeps all.
    log_step_count_steps: progress line (step, loss, examples/sec) and `global_step/sec` cadence.
    steps_per_loop: train steps run in one device dispatch (`lax.scan`), as TPUEstimator's
      `iterations_per_loop`; hooks, summaries and checkpoints act at loop boundaries.
    strategy: a `jestimator.distributed` strategy; None is `SingleDevice()`.
    check_nan_loss: check every step's loss on the device (read at the next sync, no extra
      one) and act on the first non-finite step as `fail_on_nan_loss` says; no checkpoint is
      written after it. False turns the check off (TF: no `NanTensorHook`).
    compilation_cache: turn on JAX's persistent compilation cache (at
      `~/.cache/jestimator/jax_compilation_cache` unless a JAX cache directory is set, which wins),
      so a new process reuses the programs an earlier one compiled; False leaves JAX's setting
      alone. See `jestimator.driver.compilation_cache`.
    fail_on_nan_loss: what the built-in check does on a non-finite loss (TF's
      `NanTensorHook(fail_on_nan_loss=...)`): True raises `hooks.NanLossDuringTrainingError`
      naming the step; False logs an error and stops training, saving nothing after it. Hooks
      in `train(hooks=...)` never change the built-in check: a `hooks.NanLossHook` or
      `NanTensorHook` there acts on its own, as TF's hook did.
    device_memory_bytes: one device's memory, for the memory plan where the runtime reports
      none (CPU); when set (or the strategy shards the state), `train` plans the train step's
      per-device bytes before creating the state and fails naming the largest parameters if
      they exceed it (see `Estimator.memory_plan`). None: the runtime's figure, if any.
  """

  model_dir: str | None = None
  seed: int | None = None
  save_summary_steps: int = 100
  save_checkpoints_steps: int | None = None
  save_checkpoints_secs: Any = _UNSET
  keep_checkpoint_max: int | None = 5
  log_step_count_steps: int = 100
  steps_per_loop: int = 1
  strategy: Any = None
  check_nan_loss: bool = True
  compilation_cache: bool = True
  tf_random_seed: int | None = None
  fail_on_nan_loss: bool = True
  device_memory_bytes: int | None = None

  def __post_init__(self):
    self._check_seed()
    secs = self.save_checkpoints_secs
    if self.save_checkpoints_steps is not None and secs is not _UNSET and secs is not None:
      raise ValueError('save_checkpoints_steps and save_checkpoints_secs cannot both be set')
    if secs is _UNSET:
      object.__setattr__(self, 'save_checkpoints_secs',
                         None if self.save_checkpoints_steps is not None else _DEFAULT_SAVE_SECS)
    for name in ('log_step_count_steps', 'steps_per_loop'):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f'{name} should be > 0 (a positive int), got {value!r} '
                         f'(RunConfig.{name})')
    # TF's `_validate_properties`: None passes; its messages are kept ("... should be >= 0").
    _check_count('save_summary_steps', self.save_summary_steps)
    _check_count('save_checkpoints_steps', self.save_checkpoints_steps)
    _check_count('keep_checkpoint_max', self.keep_checkpoint_max)
    secs = self.save_checkpoints_secs
    if secs is not None and (isinstance(secs, bool) or
                             not isinstance(secs, (int, float, np.integer, np.floating))):
      raise WrongTypeError(f'RunConfig.save_checkpoints_secs must be a number of seconds or None, '
                           f'got {secs!r}')
    if secs is not None and not secs >= 0:
      raise ValueError(f'save_checkpoints_secs should be >= 0, got {secs!r}')
    if not isinstance(self.check_nan_loss, bool):
      raise TypeError(f'RunConfig.check_nan_loss must be a bool, got {self.check_nan_loss!r}')
    if not isinstance(self.fail_on_nan_loss, bool):
      raise TypeError(f'RunConfig.fail_on_nan_loss must be a bool, got {self.fail_on_nan_loss!r}')
    if not isinstance(self.compilation_cache, bool):
      raise TypeError(f'RunConfig.compilation_cache must be a bool, got '
                      f'{self.compilation_cache!r}')
    memory = self.device_memory_bytes
    if memory is not None and (isinstance(memory, bool) or
                               not isinstance(memory, (int, np.integer)) or memory <= 0):
      raise ValueError(f'RunConfig.device_memory_bytes must be a positive int (bytes) or None, '
                       f'got {memory!r}')
    if self.model_dir == '':
      raise ValueError('model_dir should be non-empty. (RunConfig.model_dir got \'\')')

  def _check_seed(self) -> None:
    """`seed` and `tf_random_seed` name one integer; both are set to it."""
    seed, tf_seed = self.seed, self.tf_random_seed
    for value in (seed, tf_seed):
      if value is not None and (isinstance(value, bool) or
                                not isinstance(value, (int, np.integer))):
        # TF raises ValueError("tf_random_seed must be integer."); TypeError is the natural class.
        raise WrongTypeError(f'tf_random_seed must be integer. RunConfig seed/tf_random_seed got '
                             f'{type(value).__name__} {value!r} (a float would be truncated)')
    if seed is not None and tf_seed is not None and int(seed) != int(tf_seed):
      raise ValueError(f'RunConfig got seed={seed!r} and tf_random_seed={tf_seed!r}: they are '
                       'two names of one seed; give one')
    value = seed if seed is not None else tf_seed
    value = None if value is None else int(value)
    object.__setattr__(self, 'seed', value)
    object.__setattr__(self, 'tf_random_seed', value)

  @property
  def random_seed(self) -> int:
    """The effective seed (0 when `seed` is None)."""
    return 0 if self.seed is None else int(self.seed)

  @property
  def saves_checkpoints(self) -> bool:
    """Whether periodic checkpoints are on (TF's test: either cadence set and non-zero)."""
    return bool(self.save_checkpoints_steps or self.save_checkpoints_secs)

  def replace(self, **kwargs) -> 'RunConfig':
    """A copy with the given fields changed (unknown names are a ValueError)."""
    fields = {f.name for f in dataclasses.fields(self)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
      raise ValueError(f'RunConfig has no field(s) {unknown}; fields are {sorted(fields)}')
    if 'save_checkpoints_steps' in kwargs and 'save_checkpoints_secs' not in kwargs:
      kwargs['save_checkpoints_secs'] = (_UNSET if kwargs['save_checkpoints_steps'] is None
                                         else None)
    elif 'save_checkpoints_secs' in kwargs and 'save_checkpoints_steps' not in kwargs:
      kwargs['save_checkpoints_steps'] = None
    # One seed under two names: replacing either replaces both.
    for name, other in (('seed', 'tf_random_seed'), ('tf_random_seed', 'seed')):
      if name in kwargs and other not in kwargs:
        kwargs[other] = None
    return dataclasses.replace(self, **kwargs)


def _check_count(name: str, value: Any) -> None:
  """None or an int >= 0 (TF's rule and message for the step counts and `keep_checkpoint_max`)."""
  if value is None:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise WrongTypeError(f'RunConfig.{name} must be an int >= 0 or None, got '
                         f'{type(value).__name__} {value!r}')
  if value < 0:
    raise ValueError(f'{name} should be >= 0, got {value!r} (RunConfig.{name})')
