"""`VocabInfo`: warm-starting an embedding or linear weight whose vocabulary changed (TF's
`tf.estimator.VocabInfo` semantics, pinned against TF 2.15 in tests/tf_parity/test_warm_start_vocab.py).

Along `axis`, entry `i < new_vocab_size` of the new variable takes the old variable's entry of the
same token when the token is among the first `old_vocab_size` of the old vocabulary; every other
entry (new tokens, and the `num_oov_buckets` OOV entries after the vocabulary) takes
`backup_initializer` (zeros without one, as TF).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class VocabInfo:
  """How to remap one variable's rows (or columns, `axis=1`) from an old vocabulary to a new one.

  Attributes:
    new_vocab: the new vocabulary: a file with one token per line (TF's format) or a list.
    new_vocab_size: how many of its first tokens the variable holds.
    num_oov_buckets: OOV entries after the vocabulary (they take the backup initializer).
    old_vocab: the vocabulary the checkpoint's variable was trained with (file or list).
    old_vocab_size: how many of its first tokens to use; -1: all.
    backup_initializer: `init(key, shape, dtype)` (a `jax.nn.initializers` initializer) for the
      entries with no old value; None: zeros (TF).
    axis: 0 remaps rows (embeddings, linear weights), 1 remaps columns (e.g. a logits layer).
  """
  new_vocab: str | Sequence[str]
  new_vocab_size: int
  num_oov_buckets: int
  old_vocab: str | Sequence[str]
  old_vocab_size: int = -1
  backup_initializer: Callable[..., Any] | None = None
  axis: int = 0

  def __post_init__(self):
    if self.axis not in (0, 1):
      raise ValueError(f'VocabInfo: axis must be 0 or 1, got {self.axis!r}')
    if not isinstance(self.new_vocab_size, int) or self.new_vocab_size <= 0:
      raise ValueError(f'VocabInfo: new_vocab_size must be a positive int, got '
                       f'{self.new_vocab_size!r}')
    if not isinstance(self.num_oov_buckets, int) or self.num_oov_buckets < 0:
      raise ValueError(f'VocabInfo: num_oov_buckets must be an int >= 0, got '
                       f'{self.num_oov_buckets!r}')
    if self.backup_initializer is not None and not callable(self.backup_initializer):
      raise TypeError('VocabInfo: backup_initializer must be init(key, shape, dtype) or None')


def _tokens(vocab: str | Sequence[str], size: int, what: str) -> list[str]:
  if isinstance(vocab, (str, os.PathLike)):
    with open(vocab, encoding='utf-8') as f:
      tokens = f.read().splitlines()
  else:
    tokens = [str(t) for t in vocab]
  if size >= 0:
    if size > len(tokens):
      raise ValueError(f'VocabInfo: {what} size {size} is larger than the vocabulary '
                       f'({len(tokens)} tokens in {vocab if isinstance(vocab, str) else "list"})')
    tokens = tokens[:size]
  return tokens


def remap(old_value: np.ndarray, info: VocabInfo, new_shape: tuple[int, ...], dtype: Any,
          name: str) -> np.ndarray:
  """The warm-started value of variable `name` (shape `new_shape`) from `old_value`."""
  axis = info.axis
  if len(new_shape) <= axis or new_shape[axis] != info.new_vocab_size + info.num_oov_buckets:
    raise ValueError(f"warm start: variable '{name}' has shape {new_shape}; VocabInfo wants "
                     f'new_vocab_size + num_oov_buckets = {info.new_vocab_size} + '
                     f'{info.num_oov_buckets} entries along axis {axis}')
  other = tuple(d for i, d in enumerate(new_shape) if i != axis)
  old_other = tuple(d for i, d in enumerate(old_value.shape) if i != axis)
  if other != old_other:
    raise ValueError(f"warm start: variable '{name}' is {new_shape} but the checkpoint's is "
                     f'{old_value.shape}: only axis {axis} may differ')
  new_tokens = _tokens(info.new_vocab, info.new_vocab_size, 'new_vocab')
  old_tokens = _tokens(info.old_vocab, info.old_vocab_size, 'old_vocab')
  if len(old_tokens) > old_value.shape[axis]:
    raise ValueError(f"warm start: the checkpoint's '{name}' has {old_value.shape[axis]} entries "
                     f'along axis {axis}, fewer than old_vocab ({len(old_tokens)} tokens)')
  if info.backup_initializer is None:
    value = np.zeros(new_shape, dtype)
  else:
    value = np.array(info.backup_initializer(jax.random.PRNGKey(0), new_shape, dtype), dtype)
  old_index = {t: i for i, t in enumerate(old_tokens)}
  new_pos = np.array([i for i, t in enumerate(new_tokens) if t in old_index], np.int64)
  old_pos = np.array([old_index[new_tokens[i]] for i in new_pos], np.int64)
  if new_pos.size:
    src = np.take(np.asarray(old_value), old_pos, axis=axis).astype(dtype)
    if axis == 0:
      value[new_pos] = src
    else:
      value[:, new_pos] = src
  return value


__all__ = ['VocabInfo', 'remap']
