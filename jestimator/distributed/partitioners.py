"""Partitioners: which train-state parameters `DataParallel` shards over its mesh.

A partitioner maps one parameter — its checkpoint path (`'params/dnn/.../embedding_weights'`),
shape and dtype — to a `jax.sharding.PartitionSpec` over the strategy's mesh axes, or None to keep
it replicated. `DataParallel(partitioner=...)` asks it once per parameter; optimizer slots (Adagrad
accumulators, FTRL's two slots, Adam's moments, `MultiSteps`' gradient sums) follow their
parameter (see `jestimator.distributed.sharding`).

TF's `ParameterServerStrategy(variable_partitioner=...)` maps as:

  tf.distribute.experimental.partitioners.MinSizePartitioner(min_shard_bytes)
      -> MinSizePartitioner(min_shard_bytes)   (parameters of at least that size split over the
         whole `data` axis: a mesh axis has one size)
  tf.distribute.experimental.partitioners.FixedShardsPartitioner(num_shards)
      -> a mesh whose `data` axis has num_shards devices and MinSizePartitioner (or a
         RegexPartitioner naming the tables): the shard count is the mesh's, not a parameter's
  a per-variable choice -> RegexPartitioner([(regex, PartitionSpec), ...])
"""
from __future__ import annotations

import re
from typing import Any, Protocol, Sequence

import numpy as np
from jax.sharding import PartitionSpec as P


class Partitioner(Protocol):
  """`(path, shape, dtype, axis, num_shards) -> PartitionSpec | None` for one parameter.

  `axis` is the strategy's data axis and `num_shards` its size; a spec may also name the mesh's
  other axes. None (or an empty spec) keeps the parameter replicated.
  """

  def __call__(self, path: str, shape: tuple[int, ...], dtype: Any, axis: str,
               num_shards: int) -> P | None: ...


class MinSizePartitioner:
  """Row-shards every parameter of rank >= 2 of at least `min_shard_bytes` over the whole `data`
  axis; smaller ones (and biases) stay replicated.

  TF's `MinSizePartitioner` splits a variable into as many shards as keep each at least
  `min_shard_bytes`; on a mesh a parameter is split over the whole axis or not at all, so here
  the threshold is the parameter's size. The choice does not depend on the device count: a
  checkpoint restores on any number of devices with the same parameters sharded.

  Args:
    min_shard_bytes: the smallest parameter worth sharding (default 64 MiB: smaller tables are
      cheaper replicated, and DNN kernels, whose rows rarely divide over the devices, stay so).

  Example:
    DataParallel(partitioner=MinSizePartitioner(min_shard_bytes=16 << 20))
  """

  def __init__(self, min_shard_bytes: int = 64 << 20):
    if isinstance(min_shard_bytes, bool) or not isinstance(min_shard_bytes, (int, np.integer)) \
        or min_shard_bytes < 0:
      raise ValueError(f'MinSizePartitioner(min_shard_bytes=...) must be an int >= 0, got '
                       f'{min_shard_bytes!r}')
    self.min_shard_bytes = int(min_shard_bytes)

  def __call__(self, path, shape, dtype, axis, num_shards):
    if len(shape) < 2 or num_shards <= 1:
      return None
    if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize < self.min_shard_bytes:
      return None
    return P(axis, *([None] * (len(shape) - 1)))

  def __repr__(self) -> str:
    return f'MinSizePartitioner(min_shard_bytes={self.min_shard_bytes})'


class RegexPartitioner:
  """The spec of the one regex that matches a parameter's path (`re.search`), as Keras'
  `LayoutMap`; parameters no regex matches stay replicated.

  Args:
    rules: `[(regex, spec), ...]`; a spec is a `PartitionSpec`, a tuple of mesh axis names (or
      None per dimension), or None (replicated).

  Raises:
    ValueError: (when asked) more than one regex matches a path: the message names both.

  Example:
    RegexPartitioner([(r'_embedding/embedding_weights$', P('data', None))])
  """

  def __init__(self, rules: Sequence[tuple[str, Any]]):
    compiled = []
    for rule in rules:
      if not (isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)):
        raise TypeError(f'RegexPartitioner rules must be (regex, spec) pairs, got {rule!r}')
      regex, spec = rule
      if spec is not None and not isinstance(spec, P):
        if not isinstance(spec, tuple):
          raise TypeError(f'RegexPartitioner: the spec of {regex!r} must be a PartitionSpec, a '
                          f'tuple of axis names or None, got {spec!r}')
        spec = P(*spec)
      compiled.append((regex, re.compile(regex), spec))
    self.rules = compiled

  def __call__(self, path, shape, dtype, axis, num_shards):
    found = [(regex, spec) for regex, pattern, spec in self.rules if pattern.search(path)]
    if len(found) > 1:
      raise ValueError(f'RegexPartitioner: parameter {path!r} matches more than one regex: '
                       f'{found[0][0]!r} and {found[1][0]!r}; make them exclusive')
    return found[0][1] if found else None

  def __repr__(self) -> str:
    return f'RegexPartitioner({[(r, s) for r, _, s in self.rules]!r})'
