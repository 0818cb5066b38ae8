"""`BatchPlan`: how one verb's batches run (padded or not, to which size, with which mask), decided
once from the first batch and used by train, evaluate and predict alike.

- Train: a padding-aware loss (and no mutable collections, whose statistics would see the padded
  rows) on a strategy whose train step takes a global mask lets a short final batch run padded to
  the first batch's size, with zero weight on the padding; otherwise batches run unpadded, with no
  mask. The size is the first batch's, not rounded up: a batch that does not divide over the
  devices still fails loudly.
- Evaluate: the size is the first batch's rounded up to the batch multiple; a short batch pads to
  it when the loss honours the mask, else only to the batch multiple (and, if the strategy can,
  runs whole on every device instead, so padding never dilutes the model_fn's own loss).
- Predict: as evaluate with the mask always honoured (predictions of padded rows are dropped).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  """How batches run for one verb.

  Attributes:
    size: the batch size the steps compile for.
    pad: whether a short batch pads up to `size` (else to its own size rounded up to `multiple`).
    multiple: every batch runs at a multiple of this many rows (the local device count; 1 in
      training, where a batch that does not divide is an error).
    masked: whether the step takes a mask (False: training without padding).
    mask_aware: whether the model_fn's loss honours the mask (False: a padded evaluation batch
      runs whole on every device when the strategy can).
  """
  size: int
  pad: bool
  multiple: int = 1
  masked: bool = True
  mask_aware: bool = True

  @classmethod
  def for_train(cls, first_size: int, pads_train_batches: bool, padding_aware: bool,
                has_collections: bool) -> 'BatchPlan':
    pad = pads_train_batches and padding_aware and not has_collections
    return cls(first_size, pad, masked=pad)

  @classmethod
  def for_eval(cls, first_size: int, multiple: int, padding_aware: bool) -> 'BatchPlan':
    return cls(round_up(first_size, multiple), padding_aware, multiple, mask_aware=padding_aware)

  @classmethod
  def for_predict(cls, first_size: int, multiple: int) -> 'BatchPlan':
    return cls(round_up(first_size, multiple), True, multiple)

  def rows(self, n: int) -> int:
    """The row count a batch of `n` real rows runs at."""
    if self.pad and n < self.size:
      return self.size
    return round_up(n, self.multiple)


def pad_rows(tree, n: int, size: int):
  """Pads every array of `tree` from `n` to `size` rows (repeating row 0) + a float mask.

  The mask is read-only; a full batch's is shared between calls (padding-aware training asks for
  one every step).
  """
  if n == size:
    return tree, _full_mask(size)
  mask = np.zeros(size, np.float32)
  mask[:n] = 1.0
  mask.setflags(write=False)
  # Row 0 rather than zeros keeps padded rows valid inputs (ids in range, no log(0)).
  pad = lambda a: np.concatenate([a, np.repeat(a[:1], size - n, axis=0)], axis=0)
  return jax.tree.map(pad, tree), mask


@functools.lru_cache(maxsize=16)
def _full_mask(size: int) -> np.ndarray:
  mask = np.ones(size, np.float32)
  mask.setflags(write=False)
  return mask


def round_up(n: int, multiple: int) -> int:
  """`n` rounded up to a multiple of `multiple`."""
  return -(-n // multiple) * multiple
