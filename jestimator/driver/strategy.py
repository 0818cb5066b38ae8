"""How state and batches are placed and steps compiled: the `Strategy` interface.

The core ships `SingleDevice`; `jestimator.distributed` adds `Pmap` and `DataParallel`. The
Estimator talks to a strategy only through this interface, so the same model_fn runs on one
device or many without change.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jestimator.model import steps as steps_lib


@dataclasses.dataclass(frozen=True)
class InputContext:
  """What an `input_fn` that names `input_context` receives, to shard its data.

  Attributes:
    num_input_pipelines: number of processes feeding data.
    input_pipeline_id: this process's index in `[0, num_input_pipelines)`.
    num_replicas_in_sync: devices the global batch is split over.
  """
  num_input_pipelines: int = 1
  input_pipeline_id: int = 0
  num_replicas_in_sync: int = 1

  def get_per_replica_batch_size(self, global_batch_size: int) -> int:
    if global_batch_size % self.num_replicas_in_sync:
      raise ValueError(f'global batch size {global_batch_size} is not divisible by '
                       f'{self.num_replicas_in_sync} replicas')
    return global_batch_size // self.num_replicas_in_sync


class Strategy(abc.ABC):
  """Placement and compilation of the Estimator's steps.

  `put_*` take host (numpy) pytrees; batches have a leading batch axis (a `[K, batch, ...]` stack
  for `train_loop`). Compiled functions take and return placed values.
  """

  #: Block on the device every this many dispatches (None: never). Multi-device CPU collectives
  #: deadlock when too many are in flight (see jax_stack_notes.md).
  sync_every: int | None = None

  #: Whether `train_step` takes a global `mask` (4th argument) that a padding-aware loss honours
  #: exactly, so a short final training batch can be padded instead of compiled for. Per-replica
  #: losses averaged over replicas (pmap) would weight padded replicas wrongly.
  pads_train_batches: bool = False

  #: One device in this process: abstract arguments lower exactly as placed ones do (so steps
  #: can compile ahead of the state, see `abstract`), and whole arrays can stay on the device for
  #: a train step that gathers its rows there (`gather_train_step`).
  one_device: bool = False

  @property
  def num_replicas_in_sync(self) -> int:
    return 1

  def input_context(self) -> InputContext:
    return InputContext(jax.process_count(), jax.process_index(), self.num_replicas_in_sync)

  @property
  def batch_multiple(self) -> int:
    """Every per-process batch must be a multiple of this (the local device count)."""
    return 1

  @abc.abstractmethod
  def put_state(self, state: Any) -> Any:
    """Places a train state (or variables) for the compiled steps."""

  @abc.abstractmethod
  def put_batch(self, tree: Any, stacked: bool = False) -> Any:
    """Places a host batch (`stacked`: a `[K, batch, ...]` stack of K batches)."""

  @abc.abstractmethod
  def train_step(self, model, with_outputs: bool = False) -> Callable:
    """Compiled `(state, features, labels[, mask]) -> (state, outputs)` (mask: see
    `pads_train_batches`; see `steps.make_train_step`)."""

  @abc.abstractmethod
  def train_loop(self, model, with_outputs: bool = False) -> Callable:
    """Compiled `(state, features[K], labels[K], num_steps=None) -> (state, outputs)`;
    `with_outputs`: the last step's summaries too (see `steps.make_train_loop`)."""

  @abc.abstractmethod
  def eval_step(self, model) -> Callable:
    """Compiled `(variables, acc, features, labels, mask) -> (acc, outputs)` (metric states
    merged; see `steps.make_accumulate_step`)."""

  @abc.abstractmethod
  def predict_step(self, model, with_outputs: bool = False) -> Callable:
    """Compiled `(variables, features, mask) -> predictions`, or `(predictions, outputs)` with
    `with_outputs`."""

  def switched_train_step(self, model, packing) -> Callable | None:
    """Compiled `(state, features, labels, mask, want_outputs) -> (state, outputs)` with the
    summaries computed only when the bool `want_outputs` is true (`steps.make_train_step`'s
    `outputs_switch`, the summaries packed by the `summary.Packing` `packing`): one program
    instead of `train_step`'s two variants. None where the strategy has none (its steps then
    compile both variants)."""
    return None

  def put_unsharded(self, tree: Any) -> Any | None:
    """Places a batch whole on every device (not split), or None if the strategy cannot.

    Evaluation uses it for a final batch that does not divide over the devices when padding it
    would change the model_fn's own loss.
    """
    return None

  def abstract(self, tree: Any) -> Any:
    """`ShapeDtypeStruct`s of a host or abstract pytree, placed as `put_state` places (where
    `one_device`, and `DataParallel`)."""
    raise NotImplementedError(f'{type(self).__name__} places no abstract values')

  def abstract_batch(self, tree: Any, stacked: bool = False) -> Any:
    """`ShapeDtypeStruct`s of a host batch, placed as `put_batch` places (where `abstract` is)."""
    return self.abstract(tree)

  def state_shardings(self, tree: Any) -> Any | None:
    """The sharding of each leaf of a train state or variables (arrays or abstract) when the
    strategy shards the state (`DataParallel(partitioner=...)`): the state is then created and
    restored straight into them. None (the default): placed whole by `put_state`."""
    return None

  def to_host(self, tree: Any) -> Any:
    """Device values (as returned by the compiled steps) -> numpy, global view."""
    return jax.device_get(tree)

  def host_state(self, state: Any) -> Any:
    """The state as checkpoints hold it (one copy, unreplicated)."""
    return state


class SingleDevice(Strategy):
  """Everything on one device (the default): plain `jax.jit`.

  Args:
    device: a `jax.Device`; None takes the first local device.
  """

  pads_train_batches = True
  one_device = True

  def __init__(self, device: jax.Device | None = None):
    self.device = device or jax.local_devices()[0]

  def abstract(self, tree):
    placed = jax.sharding.SingleDeviceSharding(self.device)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=placed),
                        tree)

  def put_state(self, state):
    return jax.device_put(state, self.device)

  def put_batch(self, tree, stacked=False):
    if self.device.platform == 'cpu':
      # The compiled step takes numpy arrays on CPU without a copy; an explicit device_put
      # would only add Python overhead on the hot path.
      return tree
    return jax.device_put(tree, self.device)

  def train_step(self, model, with_outputs=False):
    return jax.jit(steps_lib.make_train_step(model, with_outputs=with_outputs))

  def switched_train_step(self, model, packing):
    return jax.jit(steps_lib.make_train_step(model, outputs_switch=True, packing=packing))

  def gather_train_step(self, model, with_outputs=False, packing=None):
    """`(state, all_features, all_labels, rows, mask, seen[, want_outputs]) -> (state,
    outputs)`: the train step on rows `rows` (`[batch]` int32) of whole arrays already on the
    device, gathered inside the program. `seen` (bool scalar) is carried into
    `outputs['nonfinite_seen']`, True once any step so far was non-finite, so the NaN check
    reads one flag instead of one per step. `with_outputs`: the summaries under the runtime
    switch `want_outputs`, packed by `packing` (see `switched_train_step`)."""
    step = steps_lib.make_train_step(model, outputs_switch=with_outputs, packing=packing)

    # Named as the plain step: it is the train step program of this train() (compile logs).
    def train_step(state, features, labels, rows, mask, seen, want_outputs=None):
      take = lambda a: jnp.take(a, rows, axis=0, mode='clip')  # rows are always in range
      state, outputs = step(state, jax.tree.map(take, features), jax.tree.map(take, labels), mask,
                            want_outputs)
      return state, dict(outputs, nonfinite_seen=seen | jnp.any(outputs['nonfinite']))

    return jax.jit(train_step)

  def train_loop(self, model, with_outputs=False):
    return jax.jit(steps_lib.make_model_train_loop(model, with_outputs=with_outputs))

  def eval_step(self, model):
    return jax.jit(steps_lib.make_accumulate_step(model))

  def predict_step(self, model, with_outputs=False):
    return jax.jit(steps_lib.make_predict_step(model, with_outputs))
