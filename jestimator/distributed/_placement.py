"""Shared helpers of the multi-device strategies: meshes, batch checks, host transfer."""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

# On CPU, too many collective programs in flight deadlock (jax_stack_notes.md); the loops block on
# a result every this many dispatches. Accelerators need no such throttle.
CPU_SYNC_EVERY = 10


def sync_every_for(devices: Sequence[jax.Device]) -> int | None:
  """`CPU_SYNC_EVERY` when several CPU devices exchange collectives, else None."""
  if len(devices) > 1 and any(d.platform == 'cpu' for d in devices):
    return CPU_SYNC_EVERY
  return None


def auto_mesh(devices: np.ndarray, axis_names: Sequence[str]) -> Mesh:
  """A mesh whose axes are all `AxisType.Auto`.

  An Explicit mesh (what `jax.make_mesh` builds by default) makes grad through `nn.Dense` raise
  `ShardingTypeError` when the batch is sharded; the steps are written for Auto sharding.
  """
  return Mesh(devices, tuple(axis_names), axis_types=(AxisType.Auto,) * len(axis_names))


def batch_sizes(tree: Any, stacked: bool) -> dict[str, int]:
  """`{leaf path: batch size}` (axis 0, or axis 1 of a `[K, batch, ...]` stack)."""
  axis = 1 if stacked else 0
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    shape = np.shape(leaf)
    if len(shape) <= axis:
      raise ValueError(f'batch leaf {jax.tree_util.keystr(path) or "<root>"} has shape {shape}; '
                       f'expected a {"[K, batch, ...]" if stacked else "[batch, ...]"} array')
    out[jax.tree_util.keystr(path) or '<root>'] = int(shape[axis])
  return out


def check_divisible(tree: Any, stacked: bool, multiple: int, strategy: str) -> None:
  """ValueError unless every batch dimension of `tree` is a multiple of `multiple`.

  Called before anything is placed or run, so a bad batch never changes state.
  """
  if multiple <= 1:
    return
  for name, size in batch_sizes(tree, stacked).items():
    if size % multiple:
      raise ValueError(
          f'{strategy}: the per-process batch size of {name} is {size}, which does not divide '
          f'evenly over the {multiple} local devices; use a batch size that is a multiple of '
          f'{multiple} (for a finite input whose last batch is short, drop or pad that batch, or '
          f'repeat the input with num_epochs=None)')


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def to_numpy(tree: Any) -> Any:
  """Device values -> numpy; arrays spanning other processes give what this process can see.

  A fully replicated array gives its value; an array sharded over processes (predictions, sharded
  on the batch) gives this process's rows, matching the per-process batch that went in.
  """

  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return _local_rows(x)

  return jax.tree.map(one, tree)


def _local_rows(x: jax.Array) -> np.ndarray:
  """The part of a global array held by this process's devices, assembled in global order."""
  shards = {}
  for s in x.addressable_shards:
    key = tuple((i.start or 0) for i in s.index)
    shards.setdefault(key, s)  # replicas along other mesh axes hold the same block: keep one
  starts = [sorted({k[d] for k in shards}) for d in range(x.ndim)]
  # The blocks tile a box in index space; place each by its rank along every dimension.
  grid = np.empty([len(s) for s in starts], dtype=object)
  for key, s in shards.items():
    grid[tuple(starts[d].index(key[d]) for d in range(x.ndim))] = np.asarray(s.data)
  return np.block(grid.tolist()) if x.ndim else np.asarray(grid.item())
