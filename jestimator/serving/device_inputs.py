"""The exported program's inputs: the host stage's outputs, with a symbolic batch and widths.

The feature columns' host stage pads variable-length inputs (sequences, several values per example
of a categorical feature, crosses of those) to a power-of-two width. An export traces the host
stage on two dummy batches, one of single values and one of lists: dimensions that differ become
symbolic (`b` for the batch, `d0`, `d1`, ... for widths; equal growth, one symbol). `signature.json`
records per input `{"dtype", "shape" (-1: symbolic), "dims" (symbol names or null), "pads" (the
host's padding value per symbolic axis)}`. At serving, inputs sharing a symbol are padded to their
common width with the host's own padding value (ids -1, weights 0, sequence defaults), which the
device stage ignores as it ignores the host's power-of-two padding.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from jestimator.pipeline import batches as batches_lib
from jestimator.serving import input_spec as si


def widening_levels(raw_spec: Mapping[str, Mapping[str, Any]]) -> list[frozenset[str]]:
  """Sets of raw features to give as lists in the second probe, most general first.

  Multivalent features (sequences) always vary; features of per-example shape [] may take several
  values per example when they feed categorical columns (tried for every dtype, then for integers
  and strings, then for strings only; the host stage rejects lists for numeric columns).
  """
  multi = {k for k, s in raw_spec.items() if s['multivalent']}
  scalar = {k: s['dtype'] for k, s in raw_spec.items() if not s['multivalent'] and not s['shape']}
  ints = {k for k, d in scalar.items() if d == si.STRING or np.dtype(d).kind in 'iub'}
  strings = {k for k, d in scalar.items() if d == si.STRING}
  levels = []
  for extra in (set(scalar), ints, strings, set()):
    level = frozenset(multi | extra)
    if level not in levels:
      levels.append(level)
  return levels


def describe(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], n_a: int, n_b: int
             ) -> dict[str, dict[str, Any]]:
  """The input docs from host outputs `a` (batch `n_a`) and `b` (batch `n_b`, lists)."""
  batches_lib.check_numeric(a, None)
  symbols: dict[tuple[int, int], str] = {}
  out = {}
  for key in a:
    if key not in b or a[key].ndim == 0 or a[key].shape[0] != n_a or b[key].shape[0] != n_b:
      raise ValueError(f'host stage output {key!r} lacks the leading batch dimension')
    if a[key].ndim != b[key].ndim:
      raise ValueError(f'host stage output {key!r} changes rank with its input')
    dims, shape, pads = ['b'], [-1], {}
    for axis, (da, db) in enumerate(zip(a[key].shape[1:], b[key].shape[1:]), start=1):
      if da == db:
        dims.append(None)
        shape.append(int(da))
        continue
      dims.append(symbols.setdefault((da, db), f'd{len(symbols)}'))
      shape.append(-1)
      index = [0] * b[key].ndim
      index[axis] = -1  # the last position of a width-4 row of 3 values is padding
      pads[str(axis)] = b[key][tuple(index)].item()
    out[key] = {'dtype': np.dtype(jax.dtypes.canonicalize_dtype(a[key].dtype)).name,
                'shape': shape, 'dims': dims, 'pads': pads}
  return out


def specs(doc: Mapping[str, Mapping[str, Any]]) -> dict[str, jax.ShapeDtypeStruct]:
  """`jax.ShapeDtypeStruct`s with symbolic dimensions, for `jax.export`."""
  names = sorted({d for s in doc.values() for d in s['dims'] if d is not None},
                 key=lambda d: (d != 'b', len(d), d))
  symbols = dict(zip(names, jax.export.symbolic_shape(', '.join(names))))
  return {k: jax.ShapeDtypeStruct(tuple(symbols[d] if d else n for d, n in zip(s['dims'],
                                                                              s['shape'])),
                                  np.dtype(s['dtype']))
          for k, s in doc.items()}


def align(host_out: Mapping[str, np.ndarray], doc: Mapping[str, Mapping[str, Any]]
          ) -> dict[str, np.ndarray]:
  """The program's inputs from the host stage's outputs: dtypes cast, shared widths padded."""
  widths: dict[str, int] = {}
  for key, s in doc.items():
    a = host_out.get(key)
    if a is None:
      raise ValueError(f'the host stage produced no {key!r}, which the exported program takes')
    if a.ndim != len(s['shape']) or any(
        d is None and n != have for d, n, have in zip(s['dims'][1:], s['shape'][1:], a.shape[1:])):
      raw = key.split('@')[0].split('/')[0]
      raise ValueError(f'feature {raw!r}: the host stage made {key!r} of shape {list(a.shape)} '
                       f'but this export takes {s["shape"]} (-1: any); give values shaped as at '
                       'export time (one value per example unless the feature was multivalent)')
    for d, have in zip(s['dims'][1:], a.shape[1:]):
      if d is not None:
        widths[d] = max(widths.get(d, 0), have)
  out = {}
  for key, s in doc.items():
    a = host_out[key]
    for axis, d in enumerate(s['dims']):
      if axis and d is not None and a.shape[axis] < widths[d]:
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, widths[d] - a.shape[axis])
        a = np.pad(a, pad, constant_values=s['pads'][str(axis)])
    out[key] = a.astype(s['dtype'], copy=False)
  return out
