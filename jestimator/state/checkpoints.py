"""Checkpoints in `model_dir`, through Orbax, behind one small interface.

Layout: `model_dir/<step>/{variables,train,meta}` where `variables` holds the Flax variables
(params and collections such as batch_stats), `train` the optimizer state and rng, and `meta` a
JSON document (global step, input position, format version). Orbax writes each step to a
temporary name and renames it when complete, so a process killed mid-save leaves only complete
checkpoints visible; the next save of that step starts over.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

FORMAT_VERSION = 1
_ITEMS = ('variables', 'train', 'meta')

logging.getLogger('absl').setLevel(logging.ERROR)


def _handlers():
  return {'variables': ocp.StandardCheckpointHandler(), 'train': ocp.StandardCheckpointHandler(),
          'meta': ocp.JsonCheckpointHandler()}


class Checkpointer:
  """Saves and restores train states under `directory`.

  Args:
    directory: the model_dir.
    keep_checkpoint_max: how many recent checkpoints to keep; None or 0 keeps all.
    read_only: never create the directory (evaluate / predict / inspection).
  """

  def __init__(self, directory: str, keep_checkpoint_max: int | None = 5,
               read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self._read_only = read_only
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=keep_checkpoint_max or None, enable_async_checkpointing=not read_only,
        create=not read_only, read_only=read_only)
    self._orbax = None
    if not read_only:
      self._manager  # noqa: B018  (creates model_dir now, as a writer should)

  @property
  def _manager(self):
    """The Orbax manager, made on first use: starting one costs threads and a directory scan,
    which evaluate / predict on an unchanged checkpoint do not need."""
    if self._orbax is None and not (self._read_only and not os.path.isdir(self.directory)):
      self._orbax = ocp.CheckpointManager(self.directory, options=self._options,
                                          item_names=_ITEMS, item_handlers=_handlers())
    return self._orbax

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def all_steps(self) -> list[int]:
    """Steps of the complete checkpoints, oldest first."""
    if self._orbax is None:
      # Orbax finalises a checkpoint by renaming `<step>.orbax-checkpoint-tmp-*` to `<step>`, so
      # the complete ones are exactly the all-digit directories.
      if not os.path.isdir(self.directory):
        return []
      return sorted(int(d) for d in os.listdir(self.directory)
                    if d.isdigit() and os.path.isdir(os.path.join(self.directory, d)))
    self._orbax.reload()
    return sorted(self._orbax.all_steps())

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def save(self, step: int, variables: Any, train: Any, meta: dict[str, Any]) -> None:
    """Starts saving (asynchronously); call `wait()` before relying on it."""
    meta = {**meta, 'format_version': FORMAT_VERSION, 'global_step': int(step)}
    self._manager.save(int(step), force=True, args=ocp.args.Composite(
        variables=ocp.args.StandardSave(variables), train=ocp.args.StandardSave(train),
        meta=ocp.args.JsonSave(meta)))

  def wait(self) -> None:
    if self._orbax is not None:
      self._orbax.wait_until_finished()

  def close(self) -> None:
    if self._orbax is not None:
      self._orbax.close()

  def meta(self, step: int) -> dict[str, Any]:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

  def variable_metadata(self, step: int) -> dict[str, Any]:
    """`{path: (shape, dtype)}` of the saved variables, paths joined by '/'."""
    tree = self._manager.item_metadata(step)['variables'].tree
    return {'/'.join(str(getattr(k, 'key', k)) for k in path): (tuple(m.shape), np.dtype(m.dtype))
            for path, m in jax.tree_util.tree_flatten_with_path(tree)[0]}

  def check_compatible(self, step: int, abstract_variables: Any) -> None:
    """Raises a ValueError naming the first variable whose shape or dtype differs."""
    saved = self.variable_metadata(step)
    wanted = {path: (tuple(a.shape), np.dtype(a.dtype))
              for path, a in flatten_with_names(abstract_variables).items()}
    for path in sorted(set(saved) | set(wanted)):
      if path not in saved:
        raise ValueError(f'checkpoint {self.path(step)} does not match the model: variable '
                         f'{path!r} {wanted[path][0]} {wanted[path][1]} is not in it')
      if path not in wanted:
        raise ValueError(f'checkpoint {self.path(step)} does not match the model: it holds '
                         f'{path!r} {saved[path][0]}, which the model does not create')
      if saved[path] != wanted[path]:
        raise ValueError(
            f'checkpoint {self.path(step)} does not match the model: variable {path!r} is '
            f'{saved[path][0]} {saved[path][1]} in the checkpoint but {wanted[path][0]} '
            f'{wanted[path][1]} in the model')

  def restore(self, step: int, abstract_variables: Any, abstract_train: Any | None = None):
    """`(variables, train or None, meta)` at `step`, shaped like the abstract targets."""
    self.check_compatible(step, abstract_variables)
    args = dict(variables=ocp.args.StandardRestore(_with_sharding(abstract_variables)),
                meta=ocp.args.JsonRestore())
    if abstract_train is not None:
      args['train'] = ocp.args.StandardRestore(_with_sharding(abstract_train))
    out = self._manager.restore(step, args=ocp.args.Composite(**args))
    return out['variables'], out.get('train') if abstract_train is not None else None, out['meta']

  def restore_raw_variables(self, step: int) -> dict[str, np.ndarray]:
    """The saved variables as `{path: numpy array}`, without knowing the model."""
    tree = self._manager.item_metadata(step)['variables'].tree
    abstract = _with_sharding(
        jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree))
    out = self._manager.restore(step, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(abstract)))
    return {k: np.asarray(v) for k, v in flatten_with_names(out['variables']).items()}


def _with_sharding(abstract: Any) -> Any:
  """Targets without a sharding restore whole onto this process's first device.

  Orbax otherwise reuses the sharding saved with the checkpoint, which fails (`Topology
  mismatch`) when it was written on other devices, say by a multi-device or multi-process run;
  the strategy places the restored state afterwards.
  """
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def one(a):
    if isinstance(a, jax.ShapeDtypeStruct) and getattr(a, 'sharding', None) is None:
      return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device)
    return a

  return jax.tree.map(one, abstract)


def flatten_with_names(tree: Any) -> dict[str, Any]:
  """`{'a/b/c': leaf}` for a nested dict pytree."""
  return {'/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def step_from_path(path: str) -> int:
  """The step of a checkpoint path `model_dir/<step>`."""
  base = os.path.basename(os.path.normpath(path))
  if not base.isdigit():
    raise ValueError(f'{path!r} is not a checkpoint path (expected model_dir/<step>)')
  return int(base)
