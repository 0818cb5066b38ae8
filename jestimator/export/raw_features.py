"""Checking raw request features against a model's raw input spec (host side, numpy)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jestimator.pipeline.batches import as_array
from jestimator.export.serving_input import STRING

_STRING_KINDS = 'OSU'
_SMALL = 64


def normalize(raw: Any, specs: Mapping[str, Mapping[str, Any]], host_parses: bool = False
              ) -> tuple[dict[str, np.ndarray], int]:
  """Validated `({key: array [batch, ...]}, batch)` for the declared features of `raw`.

  Keys `raw` has beyond the spec are ignored. Raises ValueError/TypeError naming the feature for a
  missing feature, a wrong type or shape, or features disagreeing on the batch size.

  With `host_parses` (a feature-column host stage follows), values are checked but kept as given,
  so they read exactly as in training: missing values (None / NaN), several values per example for
  categorical features (declared shape []), ragged lists. Without it (raw features go straight to
  the program) they are cast to the declared dtype and shape.
  """
  if not isinstance(raw, Mapping):
    raise TypeError(f'features must be a dict {{feature_key: values}}, got {type(raw).__name__}')
  missing = [k for k in specs if k not in raw]
  if missing:
    raise ValueError(f'missing feature(s) {missing}; the model takes {sorted(specs)}')
  out = {}
  for key, spec in specs.items():
    out[key] = _feature(key, raw[key], spec, host_parses)
  sizes = {k: len(v) for k, v in out.items()}
  if len(set(sizes.values())) > 1:
    raise ValueError(f'features disagree on the number of examples (unequal list lengths): '
                     f'{sizes}')
  return out, next(iter(sizes.values()))


def _feature(key: str, value: Any, spec: Mapping[str, Any], host_parses: bool) -> np.ndarray:
  dtype, shape = spec['dtype'], tuple(spec['shape'])
  try:
    arr = as_array(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f'feature {key!r}: cannot read the values as an array ({e})') from None
  if arr.ndim == 0:
    raise ValueError(f'feature {key!r} needs one value per example (a list with a leading batch '
                     f'dimension), got the scalar {arr.item()!r}')
  if len(arr) == 0:
    raise ValueError(f'feature {key!r} is an empty list: no examples to score')
  if dtype != STRING and np.dtype(dtype).kind != 'b' and _has_bools(arr):
    # As the REST API (and TF, which will not feed a bool tensor to a float32 input): True is
    # not the number 1 here, it is a mistake worth naming.
    raise TypeError(f'feature {key!r} must hold {dtype} numbers, got booleans such as '
                    f'{arr.reshape(-1)[:3].tolist()}')
  if spec.get('multivalent'):
    return arr  # variable-length rows: the feature columns' host stage parses and checks them
  if dtype == STRING:
    if arr.dtype.kind not in _STRING_KINDS:
      raise TypeError(f'feature {key!r} must hold strings, got {arr.dtype} values such as '
                      f'{arr.reshape(-1)[:3].tolist()}')
    if arr.dtype == object and arr.size <= _SMALL and all(type(v) is str for v in arr.flat):
      # Same values, faster path: the host stage hashes fixed-width unicode directly, while object
      # arrays go through a dedupe that only pays off for large batches.
      arr = arr.astype(str)
  elif arr.dtype.kind in _STRING_KINDS and (arr.dtype.kind != 'O' or not host_parses):
    raise TypeError(f'feature {key!r} must hold {dtype} numbers, got {arr.dtype} values such as '
                    f'{arr.reshape(-1)[:3].tolist()}')
  if host_parses:
    if not shape or arr.dtype == object:
      return arr  # categorical (one or more values per example) or with None: the stage parses
    return _reshape(key, arr, shape, dtype)
  if dtype != STRING:
    arr = _numeric(key, arr, np.dtype(dtype))
  return _reshape(key, arr, shape, dtype)


def _has_bools(arr: np.ndarray) -> bool:
  if arr.dtype.kind == 'b':
    return True
  return arr.dtype == object and any(isinstance(v, (bool, np.bool_)) for v in arr.flat)


def _numeric(key: str, arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
  if arr.dtype.kind not in 'biuf':
    sample = arr.reshape(-1)[:3].tolist()
    raise TypeError(f'feature {key!r} must hold {dtype} numbers, got {arr.dtype} values such as '
                    f'{sample}')
  if dtype.kind in 'iub' and arr.dtype.kind == 'f':
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
      raise TypeError(f'feature {key!r} must hold integers ({dtype}), got non-integral floats '
                      f'such as {arr.reshape(-1)[:3].tolist()}')
  return arr.astype(dtype, copy=False)


def _reshape(key: str, arr: np.ndarray, shape: tuple[int, ...], dtype: str) -> np.ndarray:
  if arr.shape[1:] == shape:
    return arr
  # [batch] for per-example shape [1] (and the reverse) are the same data: accept both spellings.
  squeezed = tuple(d for d in arr.shape[1:] if d != 1)
  if squeezed == tuple(d for d in shape if d != 1):
    return arr.reshape((len(arr),) + shape)
  raise ValueError(f'feature {key!r} must have shape [batch, {", ".join(map(str, shape))}]'
                   f' ({dtype}), got shape [{", ".join(map(str, arr.shape))}]'.replace(', ]', ']'))


def concat(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Row-wise concatenation of normalised feature dicts with the same keys."""
  if len(batches) == 1:
    return batches[0]
  out = {}
  for k in batches[0]:
    parts = [b[k] for b in batches]
    if any(p.dtype == object for p in parts) and not all(p.dtype == object for p in parts):
      parts = [_object_rows(p) for p in parts]
    out[k] = np.concatenate(parts, axis=0)
  return out


def _object_rows(a: np.ndarray) -> np.ndarray:
  if a.dtype == object:
    return a
  if a.ndim == 1:
    return a.astype(object)
  rows = np.empty(len(a), dtype=object)
  rows[:] = list(a)
  return rows
