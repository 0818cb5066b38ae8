"""Warm starting: initialise parameters from another model's checkpoint."""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jestimator.state import vocab_remap
from jestimator.state.checkpoints import (Checkpointer, flatten_with_names, step_error,
                                          step_from_path)
from jestimator.state.vocab_remap import VocabInfo

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
    var_name_to_vocab_info: `{variable name: VocabInfo}`: remap that variable's rows (columns)
      from the checkpoint's vocabulary to the new one, as TF (see `VocabInfo`).
    var_name_to_prev_var_name: `{variable name: its name in the checkpoint}` for renamed
      variables, as TF. Names in both maps are full (`params/...`) or without the collection.
      As in TF, a name that is not a warm-started variable of the model is a ValueError.
  """
  ckpt_to_initialize_from: str
  vars_to_warm_start: str | Sequence[str] = '.*'
  var_name_to_vocab_info: Mapping[str, VocabInfo] | None = None
  var_name_to_prev_var_name: Mapping[str, str] | None = None

  def __post_init__(self):
    for key, value in (self.var_name_to_vocab_info or {}).items():
      if not isinstance(value, VocabInfo):
        raise TypeError(f'WarmStartSettings.var_name_to_vocab_info[{key!r}] must be a VocabInfo, '
                        f'got {type(value).__name__}')


def as_settings(warm_start_from: Any) -> WarmStartSettings | None:
  if warm_start_from is None or isinstance(warm_start_from, WarmStartSettings):
    return warm_start_from
  if isinstance(warm_start_from, str):
    return WarmStartSettings(warm_start_from)
  raise TypeError('warm_start_from must be a path or WarmStartSettings, got '
                  f'{type(warm_start_from).__name__}')


def _resolve(path: str) -> tuple[Checkpointer, int]:
  """`(checkpointer, step)` of `ckpt_to_initialize_from`: a model_dir's newest intact checkpoint,
  or the step folder it names. Raises a ValueError naming the path, why it cannot be used and
  which checkpoints exist there (instead of Orbax's errors about a step it cannot find)."""
  try:
    step = step_from_path(path)
    base = os.path.dirname(os.path.normpath(os.path.abspath(path)))
  except ValueError:
    step, base = None, path
  if not os.path.isdir(base):
    raise ValueError(f'warm_start_from {path!r}: {base!r} does not exist')
  ckpt = Checkpointer(base, read_only=True)
  intact = ckpt.all_steps()
  there = (f'intact checkpoints in {ckpt.directory!r} are at steps {intact}' if intact
           else f'{ckpt.directory!r} holds no intact checkpoint')
  if step is None:
    if not intact:
      raise ValueError(f'warm_start_from {path!r} holds no checkpoint: expected a model_dir '
                       'with checkpoints or a checkpoint path model_dir/<step>')
    return ckpt, ckpt.latest_step()
  if not os.path.isdir(path):
    raise ValueError(f'warm_start_from {path!r}: checkpoint of step {step} does not exist '
                     f'(deleted by checkpoint retention?); {there}')
  error = step_error(path)
  if error is not None:
    raise ValueError(f'warm_start_from {path!r}: step {step} is not a complete checkpoint '
                     f'({error}); {there}')
  return ckpt, step


def warm_start(variables: Any, settings: WarmStartSettings) -> tuple[Any, list[str]]:
  """Returns `(variables with matching entries replaced, names that were warm-started)`."""
  path = settings.ckpt_to_initialize_from
  ckpt, step = _resolve(path)
  saved = ckpt.restore_raw_variables(step)
  patterns = settings.vars_to_warm_start
  trainable_only = isinstance(patterns, str)
  patterns = [patterns] if isinstance(patterns, str) else list(patterns)
  names = flatten_with_names(variables)
  vocab_infos = _by_full_name(settings.var_name_to_vocab_info, names, 'var_name_to_vocab_info')
  prev_names = _by_full_name(settings.var_name_to_prev_var_name, names,
                             'var_name_to_prev_var_name')
  chosen, missing, new_values = [], [], {}
  for name, value in names.items():
    if trainable_only and not name.startswith('params/'):
      continue
    if not any(re.fullmatch(p, name) or re.fullmatch(p, name.split('/', 1)[1]) for p in patterns):
      continue
    prev = prev_names.pop(name, name)
    if prev not in saved and 'params/' + prev in saved:
      prev = 'params/' + prev
    if prev not in saved:
      missing.append(prev)
      continue
    info = vocab_infos.pop(name, None)
    if info is not None:
      new_values[name] = vocab_remap.remap(saved[prev], info, value.shape, value.dtype, name)
    elif saved[prev].shape != value.shape:
      raise ValueError(f'warm start: {prev!r} is {saved[prev].shape} in {path!r} but '
                       f'{value.shape} in the model ({name!r})')
    else:
      new_values[name] = saved[prev]
    chosen.append(name)
  unused = sorted(vocab_infos) + sorted(prev_names)
  if unused:
    raise ValueError(f'warm start: var_name_to_vocab_info / var_name_to_prev_var_name name '
                     f'{unused}, which vars_to_warm_start {settings.vars_to_warm_start!r} does '
                     'not select (TF raises too)')
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
  leaves = [_like(new_values[n], l) if n in new_values else l for n, l in zip(flat_names, leaves)]
  return jax.tree_util.tree_unflatten(treedef, leaves), chosen


def _like(value: Any, fresh: Any) -> jax.Array:
  """`value` as `fresh`'s dtype, placed as `fresh` when that is sharded over devices (a sharded
  state's table goes straight to its shards, never whole onto one device)."""
  if isinstance(fresh, jax.Array) and not fresh.sharding.is_fully_replicated:
    return jax.device_put(np.asarray(value, fresh.dtype), fresh.sharding)
  return jnp.asarray(value, dtype=fresh.dtype)


def _by_full_name(mapping: Mapping[str, Any] | None, names: Mapping[str, Any],
                  what: str) -> dict[str, Any]:
  """`mapping` keyed by full variable names (`params/...`); a key naming no variable raises."""
  out = {}
  for key, value in (mapping or {}).items():
    full = key if key in names else 'params/' + key
    if full not in names:
      raise ValueError(f'warm start: {what} names {key!r}, which is not a variable of the model '
                       f'(e.g. {sorted(names)[:5]})')
    out[full] = value
  return out
