"""`DataParallel`: `jax.jit` over a device `Mesh`, batch sharded on `data`, state replicated."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jestimator.model import steps as steps_lib
from jestimator.distributed import _placement
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

  Raises:
    ValueError: both `mesh` and `devices` are given, the mesh has no `data` axis, or a
      per-process batch does not divide evenly over this process's devices.

  Example:
    config = jestimator.RunConfig(strategy=jestimator.distributed.DataParallel())
  """

  #: The mesh axis the batch is sharded over.
  data_axis = 'data'

  def __init__(self, mesh: Mesh | None = None, devices: Sequence[jax.Device] | None = None):
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

  # -- placement ----------------------------------------------------------------------------------
  def put_state(self, state: Any) -> Any:
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
    rep = self._sharding(P())
    return jax.jit(steps_lib.make_train_step(model, with_outputs=with_outputs),
                   out_shardings=(rep, rep))

  def train_loop(self, model, with_outputs: bool = False) -> Callable:
    rep = self._sharding(P())
    return jax.jit(steps_lib.make_model_train_loop(model, with_outputs=with_outputs),
                   out_shardings=(rep, rep))

  def eval_step(self, model) -> Callable:
    return jax.jit(steps_lib.make_accumulate_step(model), out_shardings=self._sharding(P()))

  def predict_step(self, model, with_outputs: bool = False) -> Callable:
    return jax.jit(steps_lib.make_predict_step(model, with_outputs))
