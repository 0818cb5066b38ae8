"""`RunConfig`: how the Estimator runs (checkpoint cadence, logging, seed, loops, strategy)."""
from __future__ import annotations

import dataclasses
from typing import Any

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
    seed: the root of all randomness (init, dropout, shuffling). None means 0: runs are
      reproducible by default (TF drew a random seed).
    save_summary_steps: training `loss` summary cadence.
    save_checkpoints_steps / save_checkpoints_secs: checkpoint cadence; at most one may be set;
      with neither, every 600 s. A checkpoint is always written at the end of `train`.
    keep_checkpoint_max: checkpoints kept; None or 0 keeps all.
    log_step_count_steps: progress line (step, loss, examples/sec) and `global_step/sec` cadence.
    steps_per_loop: train steps run in one device dispatch (`lax.scan`), as TPUEstimator's
      `iterations_per_loop`; hooks, summaries and checkpoints act at loop boundaries.
    strategy: a `jestimator.distributed` strategy; None is `SingleDevice()`.
    check_nan_loss: check every step's loss on the device (read at the next sync, no extra
      one) and raise `hooks.NanLossDuringTrainingError` naming the first non-finite step; no
      checkpoint is written after it. False turns the check off (TF: no `NanTensorHook`).
    compilation_cache: turn on JAX's persistent compilation cache (at
      `~/.cache/jestimator/jax_compilation_cache` unless a JAX cache directory is set, which wins),
      so a new process reuses the programs an earlier one compiled; False leaves JAX's setting
      alone. See `jestimator.driver.compilation_cache`.
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

  def __post_init__(self):
    secs = self.save_checkpoints_secs
    if self.save_checkpoints_steps is not None and secs is not _UNSET and secs is not None:
      raise ValueError('save_checkpoints_steps and save_checkpoints_secs cannot both be set')
    if secs is _UNSET:
      object.__setattr__(self, 'save_checkpoints_secs',
                         None if self.save_checkpoints_steps is not None else _DEFAULT_SAVE_SECS)
    for name in ('save_summary_steps', 'log_step_count_steps', 'steps_per_loop'):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f'RunConfig.{name} must be a positive int, got {value!r}')
    if self.save_checkpoints_steps is not None and self.save_checkpoints_steps <= 0:
      raise ValueError('RunConfig.save_checkpoints_steps must be positive, got '
                       f'{self.save_checkpoints_steps}')
    if not isinstance(self.check_nan_loss, bool):
      raise TypeError(f'RunConfig.check_nan_loss must be a bool, got {self.check_nan_loss!r}')
    if not isinstance(self.compilation_cache, bool):
      raise TypeError(f'RunConfig.compilation_cache must be a bool, got '
                      f'{self.compilation_cache!r}')
    if self.model_dir == '':
      raise ValueError('RunConfig.model_dir must not be empty')

  @property
  def random_seed(self) -> int:
    """The effective seed (0 when `seed` is None)."""
    return 0 if self.seed is None else int(self.seed)

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
    return dataclasses.replace(self, **kwargs)
