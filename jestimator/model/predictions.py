"""Host-side finishing of predictions: string outputs, `predict_keys`, rows.

Shared by `Estimator.predict` and served exports, so both turn class ids into class names the
same way.
"""
from __future__ import annotations

import functools
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np


def check_batch_dims(out: Any, size: int) -> Any:
  """Every prediction needs the batch dimension first (to split rows and drop padding)."""
  for path, a in jax.tree_util.tree_flatten_with_path(out)[0]:
    shape = np.shape(a)
    if not shape or shape[0] != size:
      name = 'predictions' + jax.tree_util.keystr(path)
      raise ValueError(f'{name} has shape {shape}, but every prediction needs the batch '
                       f'dimension ({size}) first; predictions are split into rows')
  return out


def finish(out: Any, string_outputs: Mapping[str, tuple[str, Sequence[str]]] | None,
           predict_keys: Sequence[str] | None) -> Any:
  """Adds string outputs (`{key: (ids_key, vocabulary)}`) and keeps only `predict_keys`."""
  if isinstance(out, Mapping):
    out = dict(out)
    for key, (ids_key, vocab) in (string_outputs or {}).items():
      if ids_key in out:
        out[key] = lookup_strings(out[ids_key], vocab)
  if predict_keys is not None:
    if not isinstance(out, Mapping):
      raise ValueError('predict_keys given but the model_fn returned predictions that are not a '
                       'dict')
    missing = [k for k in predict_keys if k not in out]
    if missing:
      raise ValueError(f'predict_keys {missing} are not among the predictions {sorted(out)}')
    out = {k: out[k] for k in predict_keys}
  return out


def lookup_strings(ids: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
  """`vocabulary[ids]` as an object array of bytes (TF's string outputs)."""
  table = _string_table(tuple(vocabulary))
  ids = np.asarray(ids)
  return table[np.where((ids >= 0) & (ids < len(vocabulary)), ids, len(vocabulary))]


@functools.lru_cache(maxsize=64)
def _string_table(vocabulary: tuple[str, ...]) -> np.ndarray:
  """The vocabulary as bytes plus b'' for out-of-range ids, built once per vocabulary."""
  table = np.array([w.encode() for w in vocabulary] + [b''], dtype=object)
  table.setflags(write=False)
  return table


def split_rows(out: Any, n: int) -> Iterator[Any]:
  """One prediction per row: dicts of rows for dict outputs, else rows of the array."""
  if isinstance(out, Mapping):
    for i in range(n):
      yield {k: v[i] for k, v in out.items()}
  else:
    for i in range(n):
      yield out[i]
