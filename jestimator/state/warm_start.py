"""Warm starting: initialise parameters from another model's checkpoint."""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from jestimator.state.checkpoints import Checkpointer, flatten_with_names, step_from_path

logger = logging.getLogger('jestimator')


@dataclasses.dataclass(frozen=True)
class WarmStartSettings:
  """Which variables to copy from which checkpoint, as `tf.estimator.WarmStartSettings`.

  Applied only when `model_dir` has no checkpoint of its own (at the start of `train`).

  Attributes:
    ckpt_to_initialize_from: a `model_dir` (its latest checkpoint is used) or a checkpoint path
      `model_dir/<step>`.
    vars_to_warm_start: a regex (or list of regexes) over variable names such as
      `params/Dense_0/kernel` or `batch_stats/BatchNorm_0/mean`. A single string matches
      trainable parameters only (TF's rule); a list may match any collection. As in TF, a
      selected variable that the checkpoint does not hold is a ValueError.
  """
  ckpt_to_initialize_from: str
  vars_to_warm_start: str | Sequence[str] = '.*'


def as_settings(warm_start_from: Any) -> WarmStartSettings | None:
  if warm_start_from is None or isinstance(warm_start_from, WarmStartSettings):
    return warm_start_from
  if isinstance(warm_start_from, str):
    return WarmStartSettings(warm_start_from)
  raise TypeError('warm_start_from must be a path or WarmStartSettings, got '
                  f'{type(warm_start_from).__name__}')


def warm_start(variables: Any, settings: WarmStartSettings) -> tuple[Any, list[str]]:
  """Returns `(variables with matching entries replaced, names that were warm-started)`."""
  path = settings.ckpt_to_initialize_from
  base = path
  step = None
  try:
    step = step_from_path(path)
    base = path.rstrip('/').rsplit('/', 1)[0]
  except ValueError:
    pass
  ckpt = Checkpointer(base, read_only=True)
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise ValueError(f'warm_start_from {path!r} holds no checkpoint')
  saved = ckpt.restore_raw_variables(step)
  patterns = settings.vars_to_warm_start
  trainable_only = isinstance(patterns, str)
  patterns = [patterns] if isinstance(patterns, str) else list(patterns)
  names = flatten_with_names(variables)
  chosen, missing = [], []
  for name, value in names.items():
    if trainable_only and not name.startswith('params/'):
      continue
    if not any(re.fullmatch(p, name) or re.fullmatch(p, name.split('/', 1)[1]) for p in patterns):
      continue
    if name not in saved:
      missing.append(name)
      continue
    if saved[name].shape != value.shape:
      raise ValueError(f'warm start: {name!r} is {saved[name].shape} in {path!r} but '
                       f'{value.shape} in the model')
    chosen.append(name)
  if missing:
    # TF raises too: starting these from random init without a word would be a silent surprise.
    raise ValueError(
        f'warm start: vars_to_warm_start {settings.vars_to_warm_start!r} selects {len(missing)} '
        f'variable(s) that {ckpt.path(step)} does not hold: {missing[:10]}'
        f'{" ..." if len(missing) > 10 else ""}; it holds {sorted(saved)[:10]}'
        f'{" ..." if len(saved) > 10 else ""}. Narrow vars_to_warm_start to the shared ones')
  if not chosen:
    logger.warning('warm start: vars_to_warm_start %r matches no variable of the model; nothing '
                   'was warm-started from %s', settings.vars_to_warm_start, ckpt.path(step))
  leaves, treedef = jax.tree_util.tree_flatten(variables)
  flat_names = list(names)
  leaves = [jnp.asarray(saved[n], dtype=l.dtype) if n in chosen else l
            for n, l in zip(flat_names, leaves)]
  return jax.tree_util.tree_unflatten(treedef, leaves), chosen
