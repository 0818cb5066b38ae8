"""Parse specs (`FixedLenFeature`, `VarLenFeature`) and `parse_example` over serialized Examples.

TF's names and semantics (`tf.io.FixedLenFeature`, `tf.io.VarLenFeature`, `tf.io.parse_example`),
returning numpy instead of tensors:

- `FixedLenFeature(shape, dtype, default_value=None)` -> `[batch, *shape]` float32 / int64 /
  object array of `bytes` (what TF's `.numpy()` gives for strings). A record without the feature
  (or with an empty `Feature`) takes `default_value`; without one that is an error, as in TF. A
  record with the wrong number of values or the wrong list type is an error naming the record.
- `VarLenFeature(dtype)` -> `[batch]` object array holding one 1-D array of values per record
  (empty when absent). TF returns a `SparseTensor` instead; this ragged form is what feature
  columns take as multivalent input (`jestimator.columns`), and `to_sparse` gives TF's
  `SparseTensorValue(indices, values, dense_shape)` when wanted (feature columns take that too,
  with TF's sparse semantics: '' and -1 are values, positions are kept).

Decoding is vectorised over the batch (`jestimator.io._wire`); a batch it cannot read exactly is
parsed with the protobuf library (`jestimator.io.example_pb`), which gives the same result.
"""
from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from google.protobuf import message as pb_message

from jestimator.io import _wire, example_pb

_KINDS = {'string': _wire.BYTES, 'float32': _wire.FLOAT, 'int64': _wire.INT64}
_LIST_NAMES = {_wire.BYTES: 'bytes_list', _wire.FLOAT: 'float_list', _wire.INT64: 'int64_list'}
_KIND_OF_NAME = {v: k for k, v in _LIST_NAMES.items()}
_NP = {'float32': np.float32, 'int64': np.int64, 'string': object}


def canonical_dtype(dtype: Any, what: str) -> str:
  """'float32', 'int64' or 'string' (the three tf.Example types) from a dtype-like value."""
  if dtype in (str, bytes, 'string', 'str', 'bytes', np.str_, np.bytes_, object):
    return 'string'
  # tf.float32-likes and np.dtype objects have a string `name`; numpy scalar types (np.float32)
  # and strings ('float32') go to np.dtype as they are.
  name = getattr(dtype, 'name', None)
  candidate = name if isinstance(name, str) else dtype
  try:
    d = np.dtype('float32' if candidate == 'float' else candidate)
  except TypeError:
    d = None
  if d == np.float32 or dtype is float:
    return 'float32'
  if d == np.int64 or dtype is int:
    return 'int64'
  raise TypeError(f"{what}: dtype must be float32, int64 or string (tf.Example's types), got "
                  f'{dtype!r}')


@dataclasses.dataclass(frozen=True)
class FixedLenFeature:
  """A feature with exactly `prod(shape)` values per record (TF's `FixedLenFeature`)."""
  shape: tuple[int, ...]
  dtype: str
  default_value: Any = None

  def __init__(self, shape: Sequence[int] | int, dtype: Any, default_value: Any = None):
    what = 'FixedLenFeature'
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in shape):
      raise ValueError(f'{what}: shape must be a list of non-negative ints, got {shape!r}')
    d = canonical_dtype(dtype, what)
    if default_value is not None:
      default_value = _normalise_default(default_value, tuple(int(s) for s in shape), d, what)
    object.__setattr__(self, 'shape', tuple(int(s) for s in shape))
    object.__setattr__(self, 'dtype', d)
    object.__setattr__(self, 'default_value', default_value)


@dataclasses.dataclass(frozen=True)
class VarLenFeature:
  """A feature with any number of values per record (TF's `VarLenFeature`)."""
  dtype: str

  def __init__(self, dtype: Any):
    object.__setattr__(self, 'dtype', canonical_dtype(dtype, 'VarLenFeature'))


def _normalise_default(value, shape: tuple[int, ...], dtype: str, what: str) -> tuple:
  """The default as a flat tuple of `prod(shape)` Python values (hashable, JSON-friendly)."""
  arr = np.asarray(value, dtype=object if dtype == 'string' else _NP[dtype])
  n = math.prod(shape)
  if arr.size == 1 and n != 1:
    arr = np.full(n, arr.reshape(()).item(), dtype=arr.dtype)
  if arr.size != n:
    raise ValueError(f'{what}: default_value has {arr.size} values but shape {list(shape)} needs '
                     f'{n}')
  if dtype == 'string':
    return tuple(v.encode('utf-8') if isinstance(v, str) else bytes(v) for v in arr.reshape(-1))
  return tuple(arr.reshape(-1).tolist())


ParseSpec = Mapping[str, 'FixedLenFeature | VarLenFeature']


def check_spec(features: Any, what: str = 'parse_example') -> dict[str, FixedLenFeature |
                                                                    VarLenFeature]:
  """The spec as a dict, or a TypeError naming the bad entry."""
  if not isinstance(features, Mapping) or not features:
    raise TypeError(f'{what}: features must be a non-empty dict of FixedLenFeature / '
                    f'VarLenFeature, got {features!r:.100}')
  for k, v in features.items():
    if not isinstance(k, str) or not isinstance(v, (FixedLenFeature, VarLenFeature)):
      raise TypeError(f'{what}: features[{k!r}] must be a FixedLenFeature or VarLenFeature, got '
                      f'{v!r:.80}')
  return dict(features)


def _collect_proto(serialized: list[bytes], keys: list[str]):
  """The protobuf-library twin of `_wire.collect` (same result structure)."""
  n = len(serialized)
  kinds = {k: np.zeros(n, np.int8) for k in keys}
  lists = {k: {kind: (np.zeros(n, np.int64), []) for kind in _LIST_NAMES} for k in keys}
  ex = example_pb.Example()
  for i, s in enumerate(serialized):
    try:
      ex.ParseFromString(s)
    except pb_message.DecodeError as e:
      raise ValueError(f'parse_example: record {i} is not a serialized tf.train.Example ({e})') \
          from e
    fmap = ex.features.feature
    for k in keys:
      if k not in fmap:
        continue
      f = fmap[k]
      which = f.WhichOneof('kind')
      if which is None:
        continue
      kind = _KIND_OF_NAME[which]
      kinds[k][i] = kind
      vals = getattr(f, which).value
      counts, flat = lists[k][kind]
      counts[i] = len(vals)
      flat.extend(vals)
  out = {}
  for k in keys:
    per_kind = {}
    for kind, (counts, flat) in lists[k].items():
      if kind == _wire.BYTES:
        per_kind[kind] = (counts, flat)
      else:
        per_kind[kind] = (counts, np.array(flat, np.float32 if kind == _wire.FLOAT else np.int64))
    out[k] = (kinds[k], per_kind)
  return out


def _as_values(values, dtype: str) -> np.ndarray:
  if dtype != 'string':
    return np.asarray(values, _NP[dtype])
  if isinstance(values, np.ndarray):
    return values.astype(object)  # S array -> bytes objects, in C
  out = np.empty(len(values), object)
  out[:] = values
  return out


def _assemble(key: str, feat, kinds: np.ndarray, lists, n: int) -> np.ndarray:
  want = _KINDS[feat.dtype]
  wrong = np.flatnonzero((kinds != 0) & (kinds != want))
  if wrong.size:
    i = int(wrong[0])
    raise ValueError(f"parse_example: feature '{key}' of record {i} is a "
                     f'{_LIST_NAMES[int(kinds[i])]} but the spec says {feat.dtype} '
                     f'({_LIST_NAMES[want]})')
  counts, values = lists.get(want, (np.zeros(n, np.int64), []))
  values = _as_values(values, feat.dtype)
  if isinstance(feat, VarLenFeature):
    ends = np.cumsum(counts).tolist()
    out = np.empty(n, object)
    out[:] = [values[s:e] for s, e in zip([0] + ends[:-1], ends)]  # views, no copies
    return out
  size = math.prod(feat.shape)
  present = kinds == want
  bad = np.flatnonzero(present & (counts != size))
  if bad.size:
    i = int(bad[0])
    raise ValueError(f"parse_example: feature '{key}' of record {i} has {int(counts[i])} values "
                     f'but FixedLenFeature shape {list(feat.shape)} needs {size}')
  if present.all():
    return values.reshape((n,) + feat.shape)
  if feat.default_value is None:
    i = int(np.flatnonzero(~present)[0])
    raise ValueError(f"parse_example: feature '{key}' is required but record {i} does not have "
                     'it (give FixedLenFeature a default_value to fill it)')
  out = np.empty((n, size), values.dtype)
  out[:] = _as_values(list(feat.default_value), feat.dtype)
  out[present] = values.reshape(-1, size)
  return out.reshape((n,) + feat.shape)


def _as_records(serialized) -> list[bytes]:
  if isinstance(serialized, (bytes, str)):
    raise TypeError('parse_example: serialized must be a batch (a list or 1-D array of bytes), '
                    'got a single value; wrap it in a list')
  records = serialized.tolist() if isinstance(serialized, np.ndarray) else list(serialized)
  if set(map(type, records)) <= {bytes}:  # the common case, checked in C
    return records
  for i, r in enumerate(records):
    if not isinstance(r, bytes):
      if isinstance(r, (bytearray, memoryview)):
        records[i] = bytes(r)
        continue
      raise TypeError(f'parse_example: record {i} must be bytes (a serialized tf.train.Example), '
                      f'got {type(r).__name__}')
  return records


def parse_example(serialized, features: ParseSpec) -> dict[str, np.ndarray]:
  """Parses a batch of serialized `tf.train.Example`s with a spec (as `tf.io.parse_example`).

  `serialized`: a list / 1-D array of `bytes`; `features`: `{key: FixedLenFeature |
  VarLenFeature}`. Returns `{key: array}` with a leading batch dimension (see the module
  docstring for the shapes). Example::

    spec = {'age': FixedLenFeature([1], 'float32'), 'tags': VarLenFeature('int64')}
    parse_example([ex.SerializeToString() for ex in examples], spec)['age']  # [n, 1] float32
  """
  spec = check_spec(features)
  records = _as_records(serialized)
  n = len(records)
  keys = list(spec)
  try:
    collected = _wire.collect(records, keys) if n else _collect_proto(records, keys)
  except _wire.Unsupported:
    collected = _collect_proto(records, keys)
  return {k: _assemble(k, spec[k], *collected[k], n) for k in keys}


class SparseTensorValue(NamedTuple):
  """TF's `tf.compat.v1.SparseTensorValue`: a sparse value as numpy parts (a plain tuple too)."""
  indices: np.ndarray  # [nnz, rank] int64
  values: np.ndarray  # [nnz]
  dense_shape: np.ndarray  # [rank] int64


def to_sparse(ragged: np.ndarray) -> SparseTensorValue:
  """TF's SparseTensor parts `(indices [nnz, 2], values [nnz], dense_shape [2])` of a VarLen
  result, e.g. to compare with `tf.io.parse_example`'s output or to feed feature columns."""
  lengths = np.fromiter(map(len, ragged), np.int64, count=len(ragged))
  rows = np.repeat(np.arange(len(ragged)), lengths)
  cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  values = np.concatenate(list(ragged)) if len(ragged) else np.zeros(0)
  return SparseTensorValue(np.stack([rows, cols], axis=1), values,
                           np.array([len(ragged), int(lengths.max(initial=0))], np.int64))


def merge_parse_specs(specs, what: str = 'make_parse_example_spec') -> dict[str, FixedLenFeature |
                                                                            VarLenFeature]:
  """Merges per-column parse specs into one dict sorted by key (TF's `make_parse_example_spec`).

  `specs`: an iterable of `{key: FixedLenFeature | VarLenFeature}`. The same key with different
  specs is a ValueError naming the key and both specs.
  """
  out: dict[str, FixedLenFeature | VarLenFeature] = {}
  for spec in specs:
    for key, feat in check_spec(spec, what).items():
      if key in out and out[key] != feat:
        raise ValueError(f"{what}: feature '{key}' is parsed as {out[key]} by one column and as "
                         f'{feat} by another')
      out[key] = feat
  return dict(sorted(out.items()))


def spec_to_json(spec: ParseSpec) -> dict:
  """A JSON-ready description of a parse spec (string defaults as base64), for exports."""
  out = {}
  for key, feat in check_spec(spec, 'spec_to_json').items():
    if isinstance(feat, VarLenFeature):
      out[key] = {'kind': 'VarLenFeature', 'dtype': feat.dtype}
      continue
    default = feat.default_value
    if default is not None and feat.dtype == 'string':
      default = [base64.b64encode(v).decode('ascii') for v in default]
    out[key] = {'kind': 'FixedLenFeature', 'dtype': feat.dtype, 'shape': list(feat.shape),
                'default_value': None if default is None else list(default)}
  return out


def spec_from_json(doc: Mapping[str, Any]) -> dict[str, FixedLenFeature | VarLenFeature]:
  """Inverse of `spec_to_json`."""
  out = {}
  for key, d in doc.items():
    if d.get('kind') == 'VarLenFeature':
      out[key] = VarLenFeature(d['dtype'])
    elif d.get('kind') == 'FixedLenFeature':
      default = d.get('default_value')
      if default is not None and d['dtype'] == 'string':
        default = [base64.b64decode(v) for v in default]
      out[key] = FixedLenFeature(d['shape'], d['dtype'], default)
    else:
      raise ValueError(f'spec_from_json: feature {key!r} has an unknown kind {d.get("kind")!r}')
  return out
