"""The mask of real (non-padding) examples in the batch a step is processing.

Evaluation and prediction pad the final short batch up to the compiled batch size so that the
compiled step is reused (never recompiled, never dropped). Inside a step the Estimator publishes the
`[batch]` float32 mask of real rows; `jestimator.metrics` and the heads weight by it automatically.

A custom `model_fn` that wants its own loss to ignore padding calls `example_mask()`:

  mask = jestimator.example_mask()            # [batch] float32, or None outside a step
  loss = jnp.sum(per_example * mask) / jnp.sum(mask)

Calling it marks the `model_fn` as *padding-aware*: its final short evaluation batch is then padded
and run by the already compiled step. A `model_fn` that never calls it (say `jnp.mean` over the
batch) gets its short batch run at its true shape instead: one extra compilation for that shape,
cached for every later call, and a loss that is exact either way.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import jax

_local = threading.local()


class _Scope:
  __slots__ = ('mask', 'used')

  def __init__(self, mask):
    self.mask = mask
    self.used = False


@contextlib.contextmanager
def mask_scope(mask: jax.Array | None) -> Iterator[_Scope]:
  """Publishes `mask` to `example_mask()` / `current_mask()` while a step is traced."""
  stack = getattr(_local, 'stack', None)
  if stack is None:
    stack = _local.stack = []
  scope = _Scope(mask)
  stack.append(scope)
  try:
    yield scope
  finally:
    stack.pop()


def current_mask() -> jax.Array | None:
  """The current example mask without declaring padding awareness (for metrics)."""
  stack = getattr(_local, 'stack', None)
  return stack[-1].mask if stack else None


def example_mask() -> jax.Array | None:
  """The `[batch]` float32 mask of real examples (1.0) vs padding (0.0) in the current step.

  Returns None outside an Estimator step. Calling it declares that the caller's loss honours the
  mask, which lets the Estimator pad short evaluation batches instead of compiling for them.
  """
  stack = getattr(_local, 'stack', None)
  if not stack:
    return None
  stack[-1].used = True
  return stack[-1].mask
