"""Selecting parameters by their checkpoint names (`params/generator/Dense_0/kernel`).

One regex helper for every place that picks a subset of parameters (train ops' `wrt=` and
`groups(by=...)`): a pattern is `re.search`ed in the `/`-joined name with the `params/` prefix,
never matched by object identity.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

PREFIX = 'params'


def path_name(path: tuple, prefix: str = PREFIX) -> str:
  """The `/`-joined checkpoint name of a `jax.tree_util` key path, under `prefix`."""
  parts = [str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))) for k in path]
  return '/'.join([prefix] + parts)


def flat(tree: Mapping, prefix: str = PREFIX) -> dict[str, Any]:
  """`{'params/a/b': leaf}` of a nested dict of arrays."""
  out = {}
  for k, v in tree.items():
    name = f'{prefix}/{k}'
    if isinstance(v, Mapping):
      out.update(flat(v, name))
    else:
      out[name] = v
  return out


def names(params: Mapping) -> list[str]:
  """The parameters' checkpoint names, sorted."""
  return sorted(flat(params))


def select(params: Mapping, wrt: str | None) -> Any:
  """The parameters whose name `wrt` (a regex) finds, as a pruned nested dict (`params` itself
  when `wrt` is None). Raises ValueError naming the pattern when it selects nothing."""
  if wrt is None:
    return params
  pattern = re.compile(wrt)

  def prune(tree, prefix):
    out = {}
    for k, v in tree.items():
      name = f'{prefix}/{k}'
      if isinstance(v, Mapping):
        sub = prune(v, name)
        if sub:
          out[k] = sub
      elif pattern.search(name):
        out[k] = v
    return out

  picked = prune(params, PREFIX)
  if not picked:
    raise ValueError(f'wrt={wrt!r} selects no parameter; names are {names(params)[:10]}')
  return picked


def merge(params: Mapping, sub: Mapping) -> dict:
  """`params` with the leaves that the pruned tree `sub` holds replaced by `sub`'s."""
  out = {}
  for k, v in params.items():
    if k not in sub:
      out[k] = v
    elif isinstance(v, Mapping):
      out[k] = merge(v, sub[k])
    else:
      out[k] = sub[k]
  return out


def merge_flat(params: Mapping, values: Mapping[str, Any], prefix: str = PREFIX) -> dict:
  """`params` with the leaves named in `values` (`{'params/a/b': leaf}`) replaced."""
  out = {}
  for k, v in params.items():
    name = f'{prefix}/{k}'
    out[k] = merge_flat(v, values, name) if isinstance(v, Mapping) else values.get(name, v)
  return out
