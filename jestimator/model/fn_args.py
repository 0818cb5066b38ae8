"""Calling user functions with only the arguments they name (TF's argument introspection)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Mapping


def arg_names(fn: Callable) -> tuple[set[str], bool]:
  """The parameter names of `fn` and whether it takes `**kwargs`."""
  sig = inspect.signature(fn)
  names = set()
  var_kw = False
  for p in sig.parameters.values():
    if p.kind is p.VAR_KEYWORD:
      var_kw = True
    elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
      names.add(p.name)
  return names, var_kw


def call_with_named_args(fn: Callable, what: str, available: Mapping[str, Any],
                         required: Iterable[str] = ()) -> Any:
  """Calls `fn` passing each entry of `available` whose name `fn` declares.

  Raises:
    ValueError: `fn` lacks a required argument, or declares a parameter without a default that is
      not among `available` (naming it and the allowed names).
  """
  names, var_kw = arg_names(fn)
  for r in required:
    if r not in names:
      raise ValueError(f'{what} must take an argument named {r!r}; its signature is '
                       f'{inspect.signature(fn)}')
  sig = inspect.signature(fn)
  for p in sig.parameters.values():
    if (p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
        and p.name not in available):
      raise ValueError(f'{what} has an argument {p.name!r} that jestimator cannot supply; allowed '
                       f'names are {sorted(available)}')
  kwargs = {k: v for k, v in available.items() if var_kw or k in names}
  return fn(**kwargs)
