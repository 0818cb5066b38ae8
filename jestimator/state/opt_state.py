"""The update rule's state in checkpoints: checking a restore target against what was saved, and
swapping a train op's extra variables (EMA weights) in for evaluation, prediction and export."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from jestimator.model import params_select as sel
from jestimator.model import train_ops


def _leaves(tree: Any) -> list[tuple[tuple, str]]:
  """`[(shape, dtype)]` of a tree of arrays, array metadata or `ShapeDtypeStruct`s, in order."""
  out = []
  for leaf in jax.tree.leaves(tree):
    shape = getattr(leaf, 'shape', None)
    if shape is None:
      continue
    out.append((tuple(shape), str(np.dtype(leaf.dtype))))
  # Sorted: Orbax's metadata may order a named tuple's fields otherwise than the state does.
  return sorted(out)


def _parts(tree: Any) -> dict[str, Any] | None:
  """The named sub-update states of a train op's state (a dict's entries), else None."""
  if isinstance(tree, Mapping):
    return {str(k): v for k, v in tree.items()}
  return None


def check_compatible(saved: Any, abstract_opt_state: Any, where: str) -> None:
  """Raises a ValueError naming the sub-update whose saved optimizer state does not match the
  train op's (`init`'s abstract state), instead of an Orbax tree error at restore.

  `saved` is the checkpoint's train item metadata tree (`{'opt_state': ..., 'rng': ...}`).
  """
  saved = saved.get('opt_state') if isinstance(saved, Mapping) else None
  if saved is None:
    return
  if _leaves(saved) == _leaves(abstract_opt_state):
    return
  hint = ('the checkpoint was written by another update rule (optimizer / train_op); train in a '
          'new model_dir, or warm start from this one (warm_start_from) to keep the weights')
  mine, theirs, path = _parts(abstract_opt_state), _parts(saved), ''
  while mine is not None and theirs is not None:
    for name in sorted(set(mine) | set(theirs)):
      if name not in theirs:
        raise ValueError(f'checkpoint {where} does not match the train op: it holds no state for '
                         f'sub-update {path + name!r} (it holds {sorted(theirs)}); {hint}')
      if name not in mine:
        raise ValueError(f'checkpoint {where} does not match the train op: it holds state for '
                         f'sub-update {path + name!r}, which the train op does not have (it has '
                         f'{sorted(mine)}); {hint}')
    differ = [n for n in sorted(mine) if _leaves(mine[n]) != _leaves(theirs[n])]
    name = differ[0]
    if _parts(mine[name]) is None or _parts(theirs[name]) is None or name == train_ops.EXTRAS:
      raise ValueError(f'checkpoint {where} does not match the train op: the state of '
                       f'sub-update {path + name!r} differs (saved {_leaves(theirs[name])[:4]}, '
                       f'the train op makes {_leaves(mine[name])[:4]}); {hint}')
    mine, theirs, path = _parts(mine[name]), _parts(theirs[name]), f'{path}{name}/'
  raise ValueError(f'checkpoint {where} does not match the update rule: its optimizer state '
                   f'holds {len(_leaves(saved))} arrays {_leaves(saved)[:4]}, the update rule '
                   f'makes {len(_leaves(abstract_opt_state))} {_leaves(abstract_opt_state)[:4]}; '
                   f'{hint}')


def swap_in(variables: Mapping, opt_state: Any, name: str) -> dict:
  """`variables` with the parameters that the train op's extra variables `name` (an EMA) hold
  replaced by those values."""
  found = train_ops.extras(opt_state)
  if name not in found:
    raise ValueError(f'eval_variables={name!r}, but the train op keeps no such variables (it '
                     f'keeps {sorted(found)}); use then(op, ema(decay, name={name!r}))')
  values = sel.flat(found[name])
  params = variables['params']
  unknown = sorted(set(values) - set(sel.flat(params)))
  if unknown:
    raise ValueError(f'eval_variables={name!r} holds {unknown[:5]}, which the model does not '
                     'create')
  return {**variables, 'params': sel.merge_flat(params, values)}
