"""`--model_config_file`: TF Serving's ModelServerConfig (protobuf text format) for several models.

  model_config_list {
    config {
      name: 'census'
      base_path: '/models/census'
      model_platform: 'jestimator'            # accepted and ignored, like 'tensorflow'
      model_version_policy { latest { num_versions: 2 } }   # or: all {}, specific { versions: 7 }
    }
    config { name: 'other' base_path: '/models/other' }
  }

Only the fields above are understood; any other field is an error naming it (never ignored).
"""
from __future__ import annotations

import re
from typing import Any

from jestimator.serving.versions import VersionPolicy

_TOKEN = re.compile(r'\s*(?:#[^\n]*\n?\s*)*(?:(?P<word>[A-Za-z_][A-Za-z0-9_.]*)|(?P<num>-?\d+)|'
                    r'(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<sym>[:{}<>;,]))')


def _tokens(text: str) -> list[tuple[str, str]]:
  out, pos = [], 0
  text = text.rstrip()
  while pos < len(text):
    m = _TOKEN.match(text, pos)
    if not m:
      if not text[pos:].strip() or text[pos:].lstrip().startswith('#'):
        break
      raise ValueError(f'model config: cannot read {text[pos:pos + 30].strip()!r} (at character '
                       f'{pos})')
    kind = m.lastgroup
    value = m.group(kind)
    if kind == 'str':
      value = bytes(value[1:-1], 'utf-8').decode('unicode_escape')
    out.append((kind, value))
    pos = m.end()
  return out


def _message(tokens: list, i: int, closing: str | None) -> tuple[dict[str, list], int]:
  fields: dict[str, list] = {}
  while i < len(tokens):
    kind, value = tokens[i]
    if kind == 'sym' and value in ';,':
      i += 1
      continue
    if kind == 'sym' and value == closing:
      return fields, i + 1
    if kind != 'word':
      raise ValueError(f'model config: expected a field name, got {value!r}')
    i += 1
    if i < len(tokens) and tokens[i] == ('sym', ':'):
      i += 1
    if i >= len(tokens):
      raise ValueError(f'model config: field {value!r} has no value')
    if tokens[i][0] == 'sym' and tokens[i][1] in '{<':
      sub, i = _message(tokens, i + 1, '}' if tokens[i][1] == '{' else '>')
      fields.setdefault(value, []).append(sub)
    else:
      fields.setdefault(value, []).append(int(tokens[i][1]) if tokens[i][0] == 'num'
                                          else tokens[i][1])
      i += 1
  if closing is not None:
    raise ValueError(f'model config: a message is not closed with {closing!r}')
  return fields, i


def _only(msg: dict, allowed: set[str], where: str) -> None:
  unknown = sorted(set(msg) - allowed)
  if unknown:
    raise ValueError(f'model config: {where} has unsupported field(s) {unknown}; supported: '
                     f'{sorted(allowed)}')


def _one(msg: dict, key: str, where: str, default: Any = None) -> Any:
  values = msg.get(key, [])
  if len(values) > 1:
    raise ValueError(f'model config: {where} sets {key!r} {len(values)} times')
  if not values:
    if default is None:
      raise ValueError(f'model config: {where} needs {key!r}')
    return default
  return values[0]


def _policy(msg: dict, where: str) -> VersionPolicy:
  _only(msg, {'latest', 'all', 'specific'}, where)
  if len(msg) != 1 or len(next(iter(msg.values()))) != 1:
    raise ValueError(f'model config: {where} needs exactly one of latest, all, specific')
  kind, (body,) = next(iter(msg.items()))
  if kind == 'latest':
    _only(body, {'num_versions'}, f'{where}.latest')
    return VersionPolicy('latest', _one(body, 'num_versions', where, 1))
  if kind == 'all':
    _only(body, set(), f'{where}.all')
    return VersionPolicy('all')
  _only(body, {'versions'}, f'{where}.specific')
  return VersionPolicy('specific', versions=tuple(body.get('versions', ())))


def parse(text: str) -> list[tuple[str, str, VersionPolicy]]:
  """`[(name, base_path, policy)]` of a ModelServerConfig in text format; ValueError if malformed."""
  top, _ = _message(_tokens(text), 0, None)
  _only(top, {'model_config_list'}, 'the file')
  models = []
  for lst in top.get('model_config_list', []):
    _only(lst, {'config'}, 'model_config_list')
    for i, cfg in enumerate(lst.get('config', [])):
      where = f'config {i}'
      _only(cfg, {'name', 'base_path', 'model_platform', 'model_version_policy'}, where)
      name, base = _one(cfg, 'name', where), _one(cfg, 'base_path', where)
      if not isinstance(name, str) or not isinstance(base, str):
        raise ValueError(f'model config: {where} name and base_path must be strings')
      policy = _policy(_one(cfg, 'model_version_policy', where, {'latest': [{}]}),
                       f'{name}.model_version_policy')
      models.append((name, base, policy))
  if not models:
    raise ValueError('model config: no model (model_config_list { config { name: ... '
                     'base_path: ... } })')
  names = [n for n, _, _ in models]
  if len(set(names)) != len(names):
    raise ValueError(f'model config: model names repeat: {names}')
  return models
