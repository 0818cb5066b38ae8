"""`DataParallel`: `jax.jit` over a device `Mesh`, batch sharded on `data`, state replicated (or
its large parameters sharded, with a partitioner)."""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jestimator.model import steps as steps_lib
from jestimator.distributed import _placement, sharding as sharding_lib
from jestimator.driver.strategy import Strategy


class DataParallel(Strategy):
  """Data parallelism with `jax.jit` over a `Mesh`: the recommended strategy, and the one that
  spans hosts.

  The compiled steps are the single-device ones; the batch is sharded over the mesh's `data` axis
  and the train state replicated, and XLA inserts the collectives. The model_fn sees the global
  batch, so losses, gradients, BatchNorm statistics and dropout masks are exactly those of
  `SingleDevice` on the same global batch.

  With several processes (`jestimator.distributed.initialize()`), each process's `input_fn`
  yields its own per-process batch (shard the data with `input_context`); the global batch is
  their concatenation in process order, built with `jax.make_array_from_process_local_data`.
  Each step every process must feed a batch of the same size. In training, when one process's
  input ends first (or its next batch differs in size), all processes stop at that step with a
  checkpoint and a warning, as the end of input ends single-process training.

  Evaluation pads a final batch that does not divide over the devices; metrics and padding-aware
  losses (the heads, or a model_fn calling `jestimator.example_mask()`) ignore the padded rows.
  For a model_fn whose loss averages over the whole batch (`jnp.mean`) that batch instead runs
  whole on every device (replicated) in a single process, so its loss stays exact; across
  processes it is padded and its loss includes the padded rows.

  Args:
    mesh: a `jax.sharding.Mesh` with a `data` axis; other axes (say `model`) hold replicas of the
      state. Its axes are used as `AxisType.Auto` whatever type they were built with. None builds
      a 1-D mesh over `devices`.
    devices: the devices of the default mesh; None takes all devices of all processes.
    partitioner: shards large parameters and their optimizer slots over the mesh instead of
      replicating them (`jestimator.distributed.MinSizePartitioner`, `RegexPartitioner`, or any
      `(path, shape, dtype, axis, num_shards) -> PartitionSpec | None`). The state is then
      created in its shardings (one compiled program, never whole on one device), restored into
      them, and stepped with them in and out, the state donated; XLA partitions the embedding
      lookups. None (the default) replicates the whole state, as before.

  Raises:
    ValueError: both `mesh` and `devices` are given, the mesh has no `data` axis, or a
      per-process batch does not divide evenly over this process's devices; (with a
      partitioner, before anything is allocated) a sharded parameter's rows do not divide over
      its shards, or its spec names an axis the mesh lacks.

  Example:
    config = jestimator.RunConfig(strategy=jestimator.distributed.DataParallel())
  """

  #: The mesh axis the batch is sharded over.
  data_axis = 'data'

  def __init__(self, mesh: Mesh | None = None, devices: Sequence[jax.Device] | None = None,
               partitioner: Callable | None = None):
    if partitioner is not None and not callable(partitioner):
      raise TypeError(f'DataParallel(partitioner=...) must be callable (say MinSizePartitioner()), '
                      f'got {type(partitioner).__name__}')
    self.partitioner = partitioner
    if mesh is not None and devices is not None:
      raise ValueError('DataParallel takes mesh or devices, not both')
    if mesh is not None:
      if not isinstance(mesh, Mesh):
        raise TypeError(f'DataParallel(mesh=...) must be a jax.sharding.Mesh, got '
                        f'{type(mesh).__name__}')
      if self.data_axis not in mesh.axis_names:
        raise ValueError(f'DataParallel mesh must have a {self.data_axis!r} axis, its axes are '
                         f'{mesh.axis_names}')
      mesh = _placement.auto_mesh(mesh.devices, mesh.axis_names)
    if devices is not None:
      devices = tuple(devices)
      if not devices:
        raise ValueError('DataParallel(devices=...) must name at least one device, got none')
    self._mesh = mesh
    self._devices = devices

  # The mesh is built on first use so that constructing a strategy never initialises the backend
  # before `jestimator.distributed.initialize()`.
  @property
  def mesh(self) -> Mesh:
    if self._mesh is None:
      devices = self._devices if self._devices is not None else tuple(jax.devices())
      self._mesh = _placement.auto_mesh(np.array(devices), (self.data_axis,))
    return self._mesh

  @property
  def sync_every(self) -> int | None:  # type: ignore[override]
    return _placement.sync_every_for(list(self.mesh.devices.flat))

  @property
  def num_replicas_in_sync(self) -> int:
    return int(self.mesh.shape[self.data_axis])

  @property
  def batch_multiple(self) -> int:
    """How many blocks of the `data` axis this process holds (its local data-parallel width)."""
    axis = self.mesh.axis_names.index(self.data_axis)
    me = jax.process_index()
    local = {idx[axis] for idx in np.ndindex(self.mesh.devices.shape)
             if self.mesh.devices[idx].process_index == me}
    return max(len(local), 1)

  def _sharding(self, spec: P) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  # -- sharded state ---------------------------------------------------------------------------
  def _axis_sizes(self) -> dict[str, int]:
    return {a: int(n) for a, n in self.mesh.shape.items()}

  def placements(self, tree: Any) -> list[sharding_lib.Placement]:
    """Each parameter of `tree` (a train state or variables, arrays or abstract) with its spec
    and shard count; all replicated without a partitioner."""
    partitioner = self.partitioner or (lambda *args: None)
    return sharding_lib.placements(tree, partitioner, self.data_axis, self._axis_sizes())

  def state_shardings(self, tree: Any) -> Any | None:
    """A `NamedSharding` per leaf of `tree` (a train state or variables), or None without a
    partitioner (replicated, placed as before)."""
    if self.partitioner is None:
      return None
    specs, _ = sharding_lib.state_specs(tree, self.partitioner, self.data_axis,
                                        self._axis_sizes())
    return jax.tree.map(self._sharding, specs, is_leaf=lambda x: isinstance(x, P))

  def abstract(self, tree: Any) -> Any:
    """`ShapeDtypeStruct`s of a state or variables, with the shardings `put_state` gives them."""
    shardings = self.state_shardings(tree)
    if shardings is None:
      shardings = jax.tree.map(lambda _: self._sharding(P()), tree)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=s),
                        tree, shardings)

  def abstract_batch(self, tree: Any, stacked: bool = False) -> Any:
    """The global batch `put_batch` makes of this per-process batch, abstract: its batch axis
    times the processes along the `data` axis."""
    sharding = self._sharding(P(None, self.data_axis) if stacked else P(self.data_axis))
    scale = self.num_replicas_in_sync // self.batch_multiple
    axis = 1 if stacked else 0

    def one(a):
      shape = list(np.shape(a))
      shape[axis] *= scale
      return jax.ShapeDtypeStruct(tuple(shape), a.dtype, sharding=sharding)

    return jax.tree.map(one, tree)

  def _put_sharded(self, state: Any) -> Any:
    multi = jax.process_count() > 1

    def one(a, sharding):
      if isinstance(a, jax.Array) and a.sharding.is_equivalent_to(sharding, a.ndim):
        return a  # created or restored in place: nothing moves
      if not multi:
        return jax.device_put(a, sharding)
      if isinstance(a, jax.Array) and not a.is_fully_addressable:
        return jax.jit(lambda x: x, out_shardings=sharding)(a)
      # Every process holds the same host value (same seed or checkpoint); each keeps its part.
      host = np.asarray(jax.device_get(a))
      return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, state, self.state_shardings(state))

  # -- placement ----------------------------------------------------------------------------------
  def put_state(self, state: Any) -> Any:
    if self.partitioner is not None:
      return self._put_sharded(state)
    sharding = self._sharding(P())
    if jax.process_count() == 1:
      return jax.device_put(state, sharding)
    # Every process holds the same host values (same seed, or the same checkpoint).
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a), sharding), jax.device_get(state))

  def put_batch(self, tree: Any, stacked: bool = False) -> Any:
    _placement.check_divisible(tree, stacked, self.batch_multiple, 'DataParallel')
    sharding = self._sharding(P(None, self.data_axis) if stacked else P(self.data_axis))
    if jax.process_count() == 1:
      return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree)

  def put_unsharded(self, tree: Any) -> Any | None:
    if jax.process_count() > 1:  # each process holds other rows: no one place has them all
      return None
    return jax.device_put(tree, self._sharding(P()))

  def to_host(self, tree: Any) -> Any:
    """Replicated values (loss, metric states) as numpy; batch-sharded values (predictions) as
    this process's rows."""
    return _placement.to_numpy(tree)

  def host_state(self, state: Any) -> Any:
    return state  # replicated global arrays: Orbax saves them from every process collectively

  # -- compiled steps -----------------------------------------------------------------------------
  pads_train_batches = True  # one global jit: a masked loss is exact over the whole batch

  def train_step(self, model, with_outputs: bool = False) -> Callable:
    step = steps_lib.make_train_step(model, with_outputs=with_outputs)
    if self.partitioner is not None:
      return self._sharded_step(step)
    rep = self._sharding(P())
    return jax.jit(step, out_shardings=(rep, rep))

  def train_loop(self, model, with_outputs: bool = False) -> Callable:
    loop = steps_lib.make_model_train_loop(model, with_outputs=with_outputs)
    if self.partitioner is not None:
      return self._sharded_step(loop)
    rep = self._sharding(P())
    return jax.jit(loop, out_shardings=(rep, rep))

  def _sharded_step(self, fn: Callable) -> Callable:
    """`fn` jitted with the state in and out in its shardings (computed from the traced state's
    paths and shapes, so no state is needed to build it) and donated: a step never holds two
    copies of a table."""
    rep = self._sharding(P())

    @functools.wraps(fn)
    def step(state, *args):
      state = jax.lax.with_sharding_constraint(state, self.state_shardings(state))
      state, outputs = fn(state, *args)
      return (jax.lax.with_sharding_constraint(state, self.state_shardings(state)),
              jax.lax.with_sharding_constraint(outputs, jax.tree.map(lambda _: rep, outputs)))

    return jax.jit(step, donate_argnums=0)

  def eval_step(self, model) -> Callable:
    return jax.jit(steps_lib.make_accumulate_step(model), out_shardings=self._sharding(P()))

  def predict_step(self, model, with_outputs: bool = False) -> Callable:
    return jax.jit(steps_lib.make_predict_step(model, with_outputs))
