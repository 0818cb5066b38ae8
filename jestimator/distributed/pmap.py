"""`Pmap`: one program per device under `jax.pmap`, collectives over a named axis."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jestimator.model import steps as steps_lib
from jestimator.distributed import _placement
from jestimator.driver.strategy import Strategy


class Pmap(Strategy):
  """Data parallelism with `jax.pmap` over the local devices (one process).

  Each device runs the model_fn on its `[batch / n_devices, ...]` slice of the batch, with
  `jestimator.make_train_step(model, axis_name=Pmap.axis_name)`: gradients, the loss and mutable
  collections (BatchNorm moving statistics) are averaged over the devices, and each device draws
  its own dropout key. BatchNorm normalises with each device's own slice statistics, as with any
  pmap program; use `DataParallel` (or `nn.BatchNorm(axis_name=Pmap.axis_name)`) for statistics
  of the whole batch. Evaluation sums the metric states of all devices, so with the padded final
  batch spread over the devices every example counts exactly once. The eval loss is each device's
  loss weighted by its real rows: exact for padding-aware losses (heads, `example_mask()`), and
  for a plain `jnp.mean` loss unless one device holds both real and padded rows.

  The train state keeps its logical shapes (no leading device axis): it is replicated on the
  devices and passed to `jax.pmap` with `in_axes=None`, so checkpoints, hooks and `int(step)` see
  the same state as under `SingleDevice`. Batches are placed split over the devices along the
  batch axis and viewed as `[n_devices, batch / n_devices, ...]` inside the compiled step (a free
  reshape, no data movement).

  Args:
    devices: the devices to run on; None takes all local devices.

  Raises:
    ValueError: several processes are running (use `DataParallel`, which spans hosts), or a batch
      does not divide evenly over the devices.

  Example:
    config = jestimator.RunConfig(strategy=jestimator.distributed.Pmap())
  """

  #: The collective axis name the steps use (`lax.pmean(x, Pmap.axis_name)`).
  axis_name = 'batch'

  def __init__(self, devices: Sequence[jax.Device] | None = None):
    if devices is not None:
      devices = tuple(devices)
      if not devices:
        raise ValueError('Pmap(devices=...) must name at least one device, got none')
      kinds = {d.platform for d in devices}
      if len(kinds) > 1:
        raise ValueError(f'Pmap devices must share one platform, got {sorted(kinds)}')
    self._devices = devices
    self._mesh = None

  # Devices are resolved on first use so that constructing a strategy never initialises the
  # backend before `jestimator.distributed.initialize()`.
  @property
  def devices(self) -> tuple[jax.Device, ...]:
    if self._devices is None:
      self._devices = tuple(jax.local_devices())
    return self._devices

  @property
  def mesh(self):
    if self._mesh is None:
      self._check_single_process()
      self._mesh = _placement.auto_mesh(np.array(self.devices), (self.axis_name,))
    return self._mesh

  @property
  def sync_every(self) -> int | None:  # type: ignore[override]
    return _placement.sync_every_for(self.devices)

  @property
  def num_replicas_in_sync(self) -> int:
    return len(self.devices)

  @property
  def batch_multiple(self) -> int:
    return len(self.devices)

  def _check_single_process(self):
    if jax.process_count() > 1:
      raise ValueError(f'Pmap runs within one process, but {jax.process_count()} processes are '
                       'running; use jestimator.distributed.DataParallel to train across hosts')

  # -- placement ----------------------------------------------------------------------------------
  def put_state(self, state: Any) -> Any:
    return jax.device_put(state, NamedSharding(self.mesh, P()))

  def put_batch(self, tree: Any, stacked: bool = False) -> Any:
    _placement.check_divisible(tree, stacked, self.batch_multiple, 'Pmap')
    spec = P(None, self.axis_name) if stacked else P(self.axis_name)
    return jax.device_put(tree, NamedSharding(self.mesh, spec))

  def to_host(self, tree: Any) -> Any:
    return jax.device_get(tree)

  # -- compiled steps -----------------------------------------------------------------------------
  def _pmap(self, fn: Callable, in_axes, out_axes) -> Callable:
    return jax.pmap(fn, axis_name=self.axis_name, in_axes=in_axes, out_axes=out_axes,
                    devices=self.devices)

  def _split(self, tree: Any, axis: int = 0) -> Any:
    """`[.., batch, ..]` -> `[.., n_devices, batch / n_devices, ..]` at `axis` (inside jit)."""
    n = len(self.devices)
    return jax.tree.map(
        lambda a: a.reshape(a.shape[:axis] + (n, a.shape[axis] // n) + a.shape[axis + 1:]), tree)

  def train_step(self, model, with_outputs: bool = False) -> Callable:
    step = steps_lib.make_train_step(model, axis_name=self.axis_name, with_outputs=with_outputs)
    # State and outputs are identical on every device after the pmean: unmapped in and out.
    mapped = self._pmap(step, in_axes=(None, 0, 0), out_axes=None)
    return jax.jit(lambda state, features, labels: mapped(state, self._split(features),
                                                          self._split(labels)))

  def train_loop(self, model, with_outputs: bool = False) -> Callable:
    loop = steps_lib.make_model_train_loop(model, self.axis_name, with_outputs)
    # `[K, batch, ...]` stacks become `[K, n_devices, per_device, ...]`, mapped over axis 1.
    mapped = self._pmap(loop, in_axes=(None, 1, 1, None), out_axes=None)
    return jax.jit(lambda state, features, labels, num_steps=None: mapped(
        state, self._split(features, 1), self._split(labels, 1), num_steps))

  def eval_step(self, model) -> Callable:
    # The step psums the states over devices, so the merged accumulator is the same everywhere.
    accumulate = steps_lib.make_accumulate_step(model, axis_name=self.axis_name)
    mapped = self._pmap(accumulate, in_axes=(None, None, 0, 0, 0), out_axes=None)
    return jax.jit(lambda variables, acc, features, labels, mask: mapped(
        variables, acc, self._split(features), self._split(labels), self._split(mask)))

  def predict_step(self, model, with_outputs: bool = False) -> Callable:
    mapped = self._pmap(steps_lib.make_predict_step(model, with_outputs), in_axes=(None, 0, 0),
                        out_axes=0)

    def predict(variables, features, mask):
      out = mapped(variables, self._split(features), self._split(mask))
      return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)

    return jax.jit(predict)
