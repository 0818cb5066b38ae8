"""JSON round trip of feature columns (`to_json` / `from_json`), and the stable column digest.

Format: `{"format": "jestimator.feature_columns", "version": 1, "columns": [...]}` where each
column is `{"column": "<ClassName>", <field>: <value>, ...}`; nested columns nest, tuples become
lists. `from_json(to_json(cols)) == cols` exactly (floats round-trip through `repr`).
Columns holding Python callables (`normalizer_fn`, `initializer`) cannot be serialised.

The `hashing` field of hashing columns is written only when it is not 'legacy', and a column read
without it is 'legacy': documents written before TF-compatible hashing existed keep their buckets
(and their digests, so their host output keys), and no saved model silently changes buckets.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable

from jestimator.columns import base, categorical, crossed, embedding, hashing, numeric, sequence

FORMAT = 'jestimator.feature_columns'
_HASHING, _LEGACY = 'hashing', 'legacy'
VERSION = 1

_CLASSES = {c.__name__: c for c in (
    numeric.NumericColumn, numeric.BucketizedColumn,
    categorical.VocabularyListCategoricalColumn, categorical.VocabularyFileCategoricalColumn,
    categorical.IdentityCategoricalColumn, categorical.HashedCategoricalColumn,
    categorical.WeightedCategoricalColumn, crossed.CrossedColumn, embedding.EmbeddingColumn,
    embedding.SharedEmbeddingColumn, embedding.IndicatorColumn, sequence.SequenceNumericColumn,
    sequence.SequenceCategoricalColumn)}

_CALLABLE_HINTS = {
    'normalizer_fn': "use normalizer='zscore' (statistics from columns.analyze) or normalise inside "
                     'the model_fn',
    'initializer': 'leave initializer=None (truncated normal, stddev 1/sqrt(dimension))',
}


def _encode(value: Any, col: base.FeatureColumn, field: str, strict: bool) -> Any:
  if isinstance(value, base.FeatureColumn):
    return column_to_dict(value, strict)
  if isinstance(value, tuple):
    return [_encode(v, col, field, strict) for v in value]
  if not strict and field == 'vocabulary_file':
    return os.path.basename(value)  # digests ignore where the file lives (exports move it)
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if callable(value):
    if strict:
      raise ValueError(f'{col.describe()} cannot be serialised to JSON: {field} is a Python '
                       f'callable ({getattr(value, "__qualname__", value)!r}); '
                       f'{_CALLABLE_HINTS.get(field, "remove it")}')
    return f'<callable {getattr(value, "__module__", "?")}.{getattr(value, "__qualname__", "?")}>'
  raise base.ColumnTypeError(
      f'{col.describe()}: field {field} holds an unserialisable {type(value).__name__}')


def column_to_dict(column: base.FeatureColumn, strict: bool = True) -> dict[str, Any]:
  """A JSON-ready dict describing `column` (nested columns included).

  `strict=False` (for digests only) writes callables as names instead of raising.
  """
  if type(column).__name__ not in _CLASSES:
    raise base.ColumnTypeError(
        f'cannot serialise {type(column).__name__}: not a jestimator feature column')
  out: dict[str, Any] = {'column': type(column).__name__}
  for f in dataclasses.fields(column):
    value = getattr(column, f.name)
    if f.name == _HASHING and value == _LEGACY:
      continue  # absent means legacy (see the module docstring)
    out[f.name] = _encode(value, column, f.name, strict)
  return out


def _decode(value: Any) -> Any:
  if isinstance(value, dict):
    return column_from_dict(value)
  if isinstance(value, list):
    return tuple(_decode(v) for v in value)
  return value


def column_from_dict(spec: dict[str, Any]) -> base.FeatureColumn:
  """Inverse of `column_to_dict` (no file is read, so vocabulary files may be absent here)."""
  if not isinstance(spec, dict) or spec.get('column') not in _CLASSES:
    raise ValueError(f'not a serialised feature column: {str(spec)[:120]}')
  cls = _CLASSES[spec['column']]
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = set(spec) - names - {'column'}
  if unknown:
    raise ValueError(f"serialised {spec['column']} has unknown fields {sorted(unknown)}")
  fields = {k: _decode(v) for k, v in spec.items() if k != 'column'}
  if _HASHING in names:
    fields[_HASHING] = hashing.check_hashing(fields.get(_HASHING, _LEGACY),
                                             f"serialised {spec['column']}")
  return cls(**fields)


def to_json(columns: Iterable[base.FeatureColumn] | base.FeatureColumn,
            indent: int | None = None) -> str:
  """Serialises columns (e.g. the fully specified output of `analyze`) to a JSON string.

  Example: `cols == from_json(to_json(cols))`.
  """
  cols = base.as_column_list(columns, 'to_json')
  return json.dumps({'format': FORMAT, 'version': VERSION,
                     'columns': [column_to_dict(c) for c in cols]}, indent=indent)


def from_json(text: str) -> list[base.FeatureColumn]:
  """Columns from a `to_json` string, equal to the ones serialised."""
  try:
    doc = json.loads(text)
  except (TypeError, json.JSONDecodeError) as e:
    raise ValueError(f'from_json: not valid JSON ({e})') from e
  if not isinstance(doc, dict) or doc.get('format') != FORMAT:
    raise ValueError(f'from_json: not a {FORMAT} document')
  if doc.get('version') != VERSION:
    raise ValueError(f"from_json: unsupported version {doc.get('version')!r} (this is {VERSION})")
  return [column_from_dict(c) for c in doc['columns']]


_DIGESTS: dict[base.FeatureColumn, str] = {}


def digest(column: base.FeatureColumn) -> str:
  """8 hex digits identifying a column's spec; stable across processes (sha1 of its JSON).

  Callables enter by qualified name and vocabulary files by base name, so a digest survives
  moving a vocabulary file (as exports do) and is defined for every column.
  """
  d = _DIGESTS.get(column)
  if d is None:
    text = json.dumps(column_to_dict(column, strict=False), sort_keys=True)
    d = hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]
    if len(_DIGESTS) > 4096:
      _DIGESTS.clear()
    _DIGESTS[column] = d
  return d
