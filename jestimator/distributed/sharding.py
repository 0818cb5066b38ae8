"""Which sharding each leaf of a train state (or variables) gets under a partitioner.

Parameters are the leaves under the `params` key (`TrainState.params`, or `variables['params']`);
the partitioner decides each one from its checkpoint path (`'params/a/b'`), shape and dtype. Every
other leaf follows a parameter when the parameter's path below `params` is a suffix of the leaf's
path and the shapes are equal (the longest such path wins): that is how optax lays out slots
(`opt_state[...].sum_of_squares['a']['b']`), inside `multi_transform`, `masked` and `MultiSteps`
alike, so no Flax partitioning boxes are needed. Everything else (step, rng, scalars, metric
states, `batch_stats`) is replicated.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

PARAMS = 'params'


@dataclasses.dataclass(frozen=True)
class Placement:
  """One parameter's placement: its path, shape, dtype, spec and the shards it is split into."""
  path: str
  shape: tuple[int, ...]
  dtype: np.dtype
  spec: P
  shards: int

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

  @property
  def bytes_per_device(self) -> int:
    return -(-self.nbytes // self.shards)


def _name(entry: Any) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _names(path) -> tuple[str, ...]:
  return tuple(_name(e) for e in path)


def _check_spec(path: str, shape: tuple, spec: P, axis_sizes: dict[str, int]) -> int:
  """The number of shards of `spec` on `shape`; ValueError naming the parameter if unusable."""
  if len(spec) > len(shape):
    raise ValueError(f'partitioner spec {spec} for parameter {path!r} has {len(spec)} entries, '
                     f'but the parameter has shape {shape}')
  shards = 1
  for dim, entry in enumerate(spec):
    axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
    n = 1
    for a in axes:
      if a not in axis_sizes:
        raise ValueError(f'partitioner spec {spec} for parameter {path!r} names mesh axis {a!r}; '
                         f'the mesh axes are {tuple(axis_sizes)}')
      n *= axis_sizes[a]
    if shape[dim] % n:
      lo, hi = shape[dim] // n * n, -(-shape[dim] // n) * n
      valid = f'{lo} or {hi}' if lo else f'{hi}'
      raise ValueError(
          f'parameter {path!r} has {shape[dim]} rows along dimension {dim}, which do not divide '
          f'over its {n} shards (spec {spec}); give it a multiple of {n} (the nearest: {valid}; '
          f'for an embedding or hashed column that is its num_buckets / hash_bucket_size), or '
          f'keep it replicated (a larger min_shard_bytes, or a RegexPartitioner rule)')
    shards *= n
  return shards


def placements(tree: Any, partitioner: Callable, axis: str, axis_sizes: dict[str, int]
               ) -> list[Placement]:
  """The placement of every parameter of `tree` (leaves with `shape`/`dtype`), in tree order."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = _names(path)
    if not names or names[0] != PARAMS:
      continue
    name, shape, dtype = '/'.join(names), tuple(np.shape(leaf)), np.dtype(leaf.dtype)
    spec = partitioner(name, shape, dtype, axis, axis_sizes[axis])
    spec = P() if spec is None else (spec if isinstance(spec, P) else P(*spec))
    out.append(Placement(name, shape, dtype, spec, _check_spec(name, shape, spec, axis_sizes)))
  return out


def state_specs(tree: Any, partitioner: Callable, axis: str, axis_sizes: dict[str, int]
                ) -> tuple[Any, list[Placement]]:
  """`(specs, placements)`: a `PartitionSpec` per leaf of `tree` (its structure), and the
  parameters' placements."""
  params = placements(tree, partitioner, axis, axis_sizes)
  # Keyed by the path below `params`: an optimizer slot's path ends with it.
  keys = [_names(path)[1:] for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
          if _names(path)[:1] == (PARAMS,)]
  by_keys = dict(zip(keys, params))
  depth = max((len(k) for k in by_keys), default=0)

  def spec_of(path, leaf):
    names = _names(path)
    if names and names[0] == PARAMS:
      return by_keys[names[1:]].spec
    shape = tuple(np.shape(leaf))
    for n in range(min(depth, len(names)), 0, -1):
      p = by_keys.get(names[-n:])
      if p is not None and p.shape == shape:
        return p.spec
    return P()

  return jax.tree_util.tree_map_with_path(spec_of, tree), params
