"""Host-side label handling of the class heads: vocabulary lookup and range checks (numpy)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def check_vocabulary(label_vocabulary: Any, n_classes: int) -> tuple[str, ...] | None:
  """`label_vocabulary` as a tuple of `n_classes` distinct strings (or None)."""
  if label_vocabulary is None:
    return None
  if not isinstance(label_vocabulary, (list, tuple)):
    raise ValueError('label_vocabulary must be a list or a tuple of strings; got type '
                     f'{type(label_vocabulary).__name__}')
  vocab = tuple(_as_str(v) for v in label_vocabulary)
  if len(vocab) != n_classes:
    raise ValueError(f'label_vocabulary must have n_classes = {n_classes} entries; got '
                     f'{len(vocab)}: {list(vocab)}')
  if len(set(vocab)) != len(vocab):
    dup = sorted({v for v in vocab if vocab.count(v) > 1})
    raise ValueError(f'label_vocabulary has duplicate entries {dup}')
  return vocab


def _as_str(v: Any) -> str:
  if isinstance(v, bytes):
    return v.decode('utf-8')
  if isinstance(v, str):
    return v
  raise ValueError(f'label_vocabulary entries must be strings; got {v!r} ({type(v).__name__})')


def class_names(label_vocabulary: tuple[str, ...] | None, n_classes: int) -> tuple[str, ...]:
  """The class names of `classes` outputs: the vocabulary, or the decimal ids ('0', '1', ...)."""
  return label_vocabulary if label_vocabulary is not None else tuple(
      str(i) for i in range(n_classes))


def lookup(labels: np.ndarray, vocab: Sequence[str], what: str = 'labels') -> np.ndarray:
  """int32 ids of string (or bytes) `labels` in `vocab`; ValueError naming any unknown label.

  Vectorised: only the distinct values are looked up.
  """
  arr = np.asarray(labels)
  if arr.dtype.kind not in 'USO':
    raise ValueError(f'{what} must be strings when label_vocabulary is set; got dtype '
                     f'{arr.dtype} (values like {arr.reshape(-1)[:3].tolist()})')
  index = {w: i for i, w in enumerate(vocab)}
  flat = arr.reshape(-1)
  try:
    uniq, inverse = np.unique(flat, return_inverse=True)
  except TypeError:  # an object array mixing str and bytes (or None) cannot be sorted
    flat = np.array([_label_str(v) for v in flat.tolist()], dtype=object)
    uniq, inverse = np.unique(flat, return_inverse=True)
  ids = np.empty(len(uniq), np.int32)
  unknown = []
  for j, u in enumerate(uniq.tolist()):
    key = u.decode('utf-8') if isinstance(u, bytes) else u
    i = index.get(key) if isinstance(key, str) else None
    if i is None:
      unknown.append(u)
      i = -1
    ids[j] = i
  if unknown:
    raise ValueError(f'{what} contain value(s) not in label_vocabulary: {unknown[:10]}'
                     f'{" ..." if len(unknown) > 10 else ""}; label_vocabulary is {list(vocab)}')
  return ids[inverse].reshape(arr.shape)


def _label_str(v: Any) -> str:
  if isinstance(v, bytes):
    return v.decode('utf-8')
  return v if isinstance(v, str) else f'<{type(v).__name__}: {v!r}>'


def check_ids(labels: np.ndarray, n_classes: int, what: str = 'labels',
              integer: bool = True) -> np.ndarray:
  """Numeric labels checked to lie in [0, n_classes) (integers) or [0, 1] (`integer=False`)."""
  arr = np.asarray(labels)
  if arr.dtype.kind in 'USO':
    raise ValueError(f'{what} are strings ({arr.dtype}) but the head has no label_vocabulary; '
                     'pass label_vocabulary=[...] or numeric labels')
  if arr.dtype.kind not in 'biuf':
    raise ValueError(f'{what} must be numeric; got dtype {arr.dtype}')
  flat = arr.reshape(-1)
  if integer:
    bad = flat[(flat < 0) | (flat >= n_classes) | (flat != np.floor(flat))]
    if bad.size:
      raise ValueError(f'{what} must be integer class ids in [0, {n_classes}); got '
                       f'{np.unique(bad)[:10].tolist()}')
  else:
    bad = flat[~((flat >= 0) & (flat <= 1))]
    if bad.size:
      raise ValueError(f'{what} must lie in [0, 1]; got {np.unique(bad)[:10].tolist()}')
  return arr
