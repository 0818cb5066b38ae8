"""The train state: the one pytree a checkpoint needs."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: int32 scalar, the global step (number of optimizer updates applied).
    params: the Flax `params` collection.
    collections: the other variable collections, e.g. `{'batch_stats': ...}` ({} if none).
    opt_state: the update rule's state (`optimizer.init(params)`, or a `train_ops.TrainOp`'s
      `init(params)`: several optimizer states, EMA weights).
    rng: a raw `uint32[2]` PRNG key; the dropout key of step `s` is `fold_in(rng, s)`, so
      resuming at any step reproduces the same randomness.
  """
  step: jax.Array
  params: Any
  collections: Any
  opt_state: Any
  rng: jax.Array

  @property
  def variables(self) -> dict[str, Any]:
    """`{'params': params, **collections}`, what `ModelFn.apply` takes."""
    return {'params': self.params, **self.collections}

  @classmethod
  def create(cls, variables, optimizer, rng) -> 'TrainState':
    """A state at step 0 from initial variables and an optax optimizer."""
    variables = dict(variables)
    params = variables.pop('params', {})
    return cls(step=jnp.zeros((), jnp.int32), params=params, collections=variables,
               opt_state=optimizer.init(params), rng=jnp.asarray(rng, jnp.uint32))
