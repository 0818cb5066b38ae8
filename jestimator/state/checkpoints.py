"""Checkpoints in `model_dir`, through Orbax, behind one small interface.

Layout: `model_dir/<step>/{variables,train,meta}` where `variables` holds the Flax variables
(params and collections such as batch_stats), `train` the optimizer state and rng, and `meta` a
JSON document (global step, input position, format version). Orbax writes each step to a
temporary name and renames it when complete, so a process killed mid-save leaves only complete
checkpoints visible; the next save of that step starts over.

Only *intact* steps count (`step_error` finds none of: a missing or unreadable commit record,
item folder or metadata document). A step folder left by something else, say an empty `999/` of a
crashed copy or a `meta` damaged on disk, is skipped with a warning naming it and its error: the
newest intact checkpoint is used, and Orbax's retention never sees (so never deletes, nor counts)
the unreadable one. A step whose array data fails to read back at restore (flipped or truncated
bytes) is treated the same way for the rest of the process (`DamagedCheckpointError`): the newest
older step that reads is used, with a warning naming the damaged one, which is never deleted (a
later save of the same step moves it aside).

A trainer's writer starts by removing what a killed process left: `*.orbax-checkpoint-tmp-*`
folders of unfinished saves, and step folders that retention had half-deleted (unreadable, older
than every intact step while retention keeps its full count); other unreadable folders are only
reported. A save that fails to write (a full disk) is an OSError naming the step, its unfinished
folder removed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from typing import Any, Iterator

import jax
import numpy as np

from jestimator.logging import root_handlers, undo_import_basic_config

# absl (through orbax) runs `logging.basicConfig()` when it logs during this import; undo it so the
# user's own `logging.basicConfig(level=...)` works (see jestimator.logging).
_root_handlers = root_handlers()
import orbax.checkpoint as ocp  # noqa: E402
undo_import_basic_config(_root_handlers)
del _root_handlers

FORMAT_VERSION = 1
_ITEMS = ('variables', 'train', 'meta')
# Orbax writes `_CHECKPOINT_METADATA` (with the commit time) when it finalises a step, and a
# `_METADATA` (array items) or `metadata` (JSON items) document in each item folder.
_COMMIT_FILE = '_CHECKPOINT_METADATA'
# Orbax saves a step under `<step>.orbax-checkpoint-tmp-<time>` and renames it when complete.
TMP_MARK = '.orbax-checkpoint-tmp'
_ITEM_DOCUMENTS = {'variables': '_METADATA', 'train': '_METADATA', 'meta': 'metadata'}

logger = logging.getLogger('jestimator')
logging.getLogger('absl').setLevel(logging.ERROR)
_warned: set[tuple[str, str]] = set()
# Steps whose array data failed to read in this process: {path: error}. Skipped like unreadable
# folders (latest, retention) but never deleted: the bytes may still be recoverable.
_damaged: dict[str, str] = {}


class DamagedCheckpointError(ValueError):
  """A checkpoint's array data cannot be read (flipped or truncated bytes), or its folder went
  away while it was read (retention of a concurrent trainer). `.step` and `.path` name it."""

  def __init__(self, path: str, step: int, reason: str):
    super().__init__(f'checkpoint {path} cannot be read: {reason}')
    self.path, self.step, self.reason = path, step, reason

  @property
  def gone(self) -> bool:
    return not os.path.isdir(self.path)


def step_error(path: str) -> str | None:
  """Why the checkpoint folder `path` cannot be used, or None when it is intact.

  Checks the commit record and every item's metadata document (small JSON files): enough to tell
  a finished save from an empty, partial or damaged folder without reading the arrays.
  """
  def read_json(name):
    file = os.path.join(path, name)
    try:
      with open(file, 'rb') as f:
        return json.loads(f.read())
    except FileNotFoundError:
      raise ValueError(f'{name} is missing') from None
    except (OSError, ValueError) as e:
      raise ValueError(f'{name} is unreadable ({type(e).__name__}: {e})') from None

  try:
    commit = read_json(_COMMIT_FILE)
    if not isinstance(commit, dict) or not commit.get('commit_timestamp_nsecs'):
      raise ValueError(f'{_COMMIT_FILE} records no commit')
    for item, document in _ITEM_DOCUMENTS.items():
      content = read_json(os.path.join(item, document))
      if item == 'meta' and not (isinstance(content, dict) and 'global_step' in content):
        raise ValueError(f'meta/{document} holds no global_step')
  except ValueError as e:
    return str(e)
  return None


def _warn_once(path: str, error: str, action: str) -> None:
  if (path, error) not in _warned:
    _warned.add((path, error))
    logger.warning('Checkpoint %s is unreadable (%s): %s', path, error, action)


@dataclasses.dataclass(frozen=True)
class _IntactSteps(ocp.path.step.NameFormat):
  """Orbax's standard step naming, listing only intact steps (so retention counts only those)."""
  standard: Any = dataclasses.field(default_factory=ocp.path.step.standard_name_format)

  def build_name(self, step: int) -> str:
    return self.standard.build_name(step)

  def find_all(self, base_path) -> Iterator[Any]:
    for m in self.standard.find_all(base_path):
      if step_error(str(m.path)) is None and str(m.path) not in _damaged:
        yield m

  def find_step(self, base_path, step: int) -> Any:
    return self.standard.find_step(base_path, step)


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
        create=not read_only, read_only=read_only, step_name_format=_IntactSteps())
    self._orbax = None
    if not read_only:
      if jax.process_index() == 0:
        self._remove_leftovers()
      self._manager  # noqa: B018  (creates model_dir now, as a writer should)

  @property
  def _manager(self):
    """The Orbax manager, made on first use: starting one costs threads and a directory scan,
    which evaluate / predict on an unchanged checkpoint do not need."""
    if self._orbax is None and not (self._read_only and not os.path.isdir(self.directory)):
      self._orbax = ocp.CheckpointManager(self.directory, options=self._options,
                                          item_names=_ITEMS, item_handlers=_handlers())
    return self._orbax

  def _remove_leftovers(self, report: bool = True) -> None:
    """Removes what a writer killed mid-save or mid-retention (or stopped by a full disk) left,
    and reports other unreadable step folders. Only the trainer that holds the model_dir lock
    makes a writer, so no save or deletion of another process is under way."""
    if not os.path.isdir(self.directory):
      return
    for name in sorted(os.listdir(self.directory)):
      if TMP_MARK in name and name.split('.', 1)[0].isdigit():
        if report:
          logger.warning('Removing %s, an unfinished checkpoint save (the process writing it '
                         'was killed or ran out of disk)', os.path.join(self.directory, name))
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    if not report:
      return
    # Retention deletes the oldest step file by file; a process killed meanwhile leaves a folder
    # that is no longer intact, so Orbax never lists (nor deletes) it again. Such a folder is
    # older than every intact step while retention keeps its full count: finish deleting it.
    # Any other unreadable folder (keep-all, or among the kept steps) may be someone's data: it
    # is only reported.
    keep, intact = self._options.max_to_keep, self.all_steps()
    unreadable = self.unreadable_steps()
    remains = [s for s in unreadable if keep and len(intact) >= keep and s < intact[0]]
    if remains:
      logger.warning('Removing %d step folder(s) that checkpoint retention had half-deleted when '
                     'its process was killed: %s', len(remains), [self.path(s) for s in remains])
      for s in remains:
        shutil.rmtree(self.path(s), ignore_errors=True)
    others = {s: e for s, e in unreadable.items() if s not in remains}
    if others:
      logger.warning('model_dir %s holds %d unreadable step folder(s), left in place: %s',
                     self.directory, len(others),
                     '; '.join(f'{self.path(s)} ({e})' for s, e in others.items()))

  def latest_step(self) -> int | None:
    """The newest intact checkpoint's step, or None.

    Newer step folders that are unreadable are skipped, each with a warning naming it and why.
    """
    steps = self.all_steps()
    latest = steps[-1] if steps else None
    for step, error in self.unreadable_steps().items():
      if latest is None or step > latest:
        _warn_once(self.path(step), error, 'skipping it; ' + (
            f'using the newest intact checkpoint {self.path(latest)}' if latest is not None
            else 'no intact checkpoint is left'))
    return latest

  def all_steps(self) -> list[int]:
    """Steps of the intact checkpoints (see `step_error`), oldest first."""
    if self._orbax is None:
      # Orbax finalises a checkpoint by renaming `<step>.orbax-checkpoint-tmp-*` to `<step>`, so
      # the finished ones are among the all-digit directories.
      return [s for s in self._step_folders()
              if step_error(self.path(s)) is None and self.path(s) not in _damaged]
    self._orbax.reload()
    return sorted(self._orbax.all_steps())

  def unreadable_steps(self) -> dict[int, str]:
    """`{step: error}` of the all-digit folders that are not intact checkpoints."""
    out = {}
    for s in self._step_folders():
      error = step_error(self.path(s)) or _damaged.get(self.path(s))
      if error is not None:
        out[s] = error
    return out

  def _step_folders(self) -> list[int]:
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(d) for d in os.listdir(self.directory)
                  if d.isdigit() and os.path.isdir(os.path.join(self.directory, d)))

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def save(self, step: int, variables: Any, train: Any, meta: dict[str, Any]) -> None:
    """Starts saving (asynchronously); call `wait()` before relying on it."""
    meta = {**meta, 'format_version': FORMAT_VERSION, 'global_step': int(step)}
    path = self.path(step)
    if jax.process_index() == 0 and os.path.isdir(path):
      error = step_error(path) or _damaged.pop(path, None)
      if error is not None:
        # An unreadable folder of the same name would make Orbax's final rename fail: move it
        # aside (never delete what may be someone's data).
        aside = f'{path}.unreadable-{time.time_ns()}'
        _warn_once(path, error, f'moving it to {aside} to save step {step}')
        os.rename(path, aside)
    self.wait()  # Orbax would wait for the previous save inside save(): name its step if it failed
    self._saving = int(step)
    with self._disk_errors():
      self._manager.save(int(step), force=True, args=ocp.args.Composite(
          variables=ocp.args.StandardSave(variables), train=ocp.args.StandardSave(train),
          meta=ocp.args.JsonSave(meta)))

  def wait(self) -> None:
    """Waits for the save under way; a failed write (say a full disk) is an OSError naming the
    step and the model_dir, its unfinished folder removed."""
    if self._orbax is not None:
      with self._disk_errors():
        self._orbax.wait_until_finished()

  @contextlib.contextmanager
  def _disk_errors(self):
    """Orbax reports a failed write as tensorstore's ValueError (`[os_error_code='28']`):
    re-raised as an OSError with that errno, naming the checkpoint."""
    try:
      yield
    except Exception as e:  # noqa: BLE001
      code = e.errno if isinstance(e, OSError) else None
      found = re.search(r"os_error_code='?(\d+)", str(e))
      if code is None and found is None:
        raise
      code = code if code is not None else int(found.group(1))
      step = getattr(self, '_saving', None)
      if jax.process_index() == 0:
        self._remove_leftovers(report=False)
      latest = self.latest_step()
      raise OSError(code, f'saving the checkpoint of step {step} in {self.directory} failed: '
                          f'{os.strerror(code)} (is the disk full?); its unfinished folder is '
                          'removed (now, or when training starts again); ' +
                          ('no complete checkpoint exists yet' if latest is None
                                         else f'the newest complete one is {self.path(latest)}')
                    ) from e

  def close(self) -> None:
    if self._orbax is not None:
      self._orbax.close()

  def meta(self, step: int) -> dict[str, Any]:
    """The step's JSON `meta` document (global step, input position, host-stage record)."""
    return self._read(step, lambda: self._manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta'])

  def _read(self, step: int, read):
    """`read()` of model-independent data (metadata, raw arrays): any error of Orbax or
    tensorstore then means damaged bytes, or a folder deleted meanwhile, and is raised as a
    `DamagedCheckpointError` naming the step."""
    try:
      return read()
    except Exception as e:  # noqa: BLE001 (Orbax / tensorstore raise ValueError, KeyError, ...)
      path = self.path(step)
      reason = f'{type(e).__name__}: {str(e)[:300]}'
      if os.path.isdir(path):
        _damaged[path] = reason
      raise DamagedCheckpointError(path, step, reason) from e

  def verify(self, step: int) -> None:
    """Reads every array of the step (variables and train state) into host memory, one item at
    a time; raises a `DamagedCheckpointError` when one cannot be read (the step is then skipped
    as damaged). Host memory, not a device: a state sharded over many devices may not fit one."""
    for item in ('variables', 'train'):
      self._raw(step, item)

  def _raw(self, step: int, item: str) -> Any:
    """The item's arrays as saved, as numpy arrays (numpy targets make Orbax restore to host)."""
    def read():
      tree = self._manager.item_metadata(step)[item].tree
      target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree)
      return self._manager.restore(step, args=ocp.args.Composite(
          **{item: ocp.args.StandardRestore(target)}))[item]
    return self._read(step, read)

  def variable_metadata(self, step: int) -> dict[str, Any]:
    """`{path: (shape, dtype)}` of the saved variables, paths joined by '/'."""
    tree = self._read(step, lambda: self._manager.item_metadata(step)['variables'].tree)
    return {'/'.join(str(getattr(k, 'key', k)) for k in path): (tuple(m.shape), np.dtype(m.dtype))
            for path, m in jax.tree_util.tree_flatten_with_path(tree)[0]}

  def train_metadata(self, step: int) -> Any:
    """The saved train item's tree (`{'opt_state': ..., 'rng': ...}`) of array metadata."""
    return self._read(step, lambda: self._manager.item_metadata(step)['train'].tree)

  def raw_train(self, step: int) -> Any:
    """The saved train item (optimizer state, rng) as numpy arrays, without knowing the model."""
    return self._raw(step, 'train')

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
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(**args))
    except Exception:
      # The model's targets may not fit (say another optimizer's state), or the data may be
      # damaged: reading the arrays as saved tells which (a DamagedCheckpointError if damaged).
      self.verify(step)
      raise
    return out['variables'], out.get('train') if abstract_train is not None else None, out['meta']

  def restore_raw_variables(self, step: int) -> dict[str, np.ndarray]:
    """The saved variables as `{path: numpy array}`, without knowing the model."""
    return {k: np.asarray(v) for k, v in flatten_with_names(self._raw(step, 'variables')).items()}


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


LOCK_FILE = '.jestimator-train.lock'


class ModelDirLock:
  """Exclusive right to train in a `model_dir`, held by one process (`fcntl.flock`).

  The lock file `model_dir/.jestimator-train.lock` names its holder (pid, host, start time). The
  kernel drops the lock when the holder dies, so a lock left by a dead process on this host is
  taken over (with a warning). A holder on another host cannot be checked from here: if the file
  names one, training fails naming it (remove the file once sure that process is gone).
  Evaluation and prediction only read, and take no lock.

  Raises (from `acquire`):
    RuntimeError: another trainer holds the lock (the message names its pid and host).
    PermissionError: model_dir cannot be written (say a read-only mount); raised before anything
      trains, instead of at the first checkpoint save.
  """

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self.path = os.path.join(self.directory, LOCK_FILE)
    self._fd: int | None = None

  def acquire(self) -> 'ModelDirLock':
    import fcntl
    import socket
    host, pid = socket.gethostname(), os.getpid()
    try:
      os.makedirs(self.directory, exist_ok=True)
      # A lock file left from earlier opens even in a read-only folder: probe a new name too.
      probe = os.path.join(self.directory, f'.jestimator-write-probe-{pid}')
      os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
      os.remove(probe)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise PermissionError(
          f'model_dir {self.directory!r} is not writable ({type(e).__name__}: {e}); training '
          'writes checkpoints there: pass a writable model_dir') from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = _read_holder(fd)
      os.close(fd)
      raise RuntimeError(
          f'model_dir {self.directory!r} is in use by another trainer (pid '
          f'{holder.get("pid", "?")} on host {holder.get("host", "?")}, since '
          f'{holder.get("since", "?")}); two trainers on one model_dir would overwrite each '
          "other's checkpoints. Use another model_dir, or stop that process") from None
    previous = _read_holder(fd)
    if previous.get('host') not in (None, host):
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)
      raise RuntimeError(
          f'model_dir {self.directory!r} is locked by pid {previous.get("pid")} on host '
          f'{previous["host"]} (since {previous.get("since")}), which cannot be checked from '
          f'{host}. If that process is gone, delete {self.path} and retry')
    if previous:
      logger.warning('Taking over the lock of model_dir %s from pid %s on this host, which is no '
                     'longer running', self.directory, previous.get('pid'))
    record = json.dumps({'pid': pid, 'host': host,
                         'since': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
    self._fd = fd
    return self

  def release(self) -> None:
    """Gives the lock up (the file stays, emptied: deleting it would race a new holder)."""
    if self._fd is None:
      return
    import fcntl
    fd, self._fd = self._fd, None
    try:
      os.ftruncate(fd, 0)
    finally:
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)

  def __enter__(self) -> 'ModelDirLock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read_holder(fd: int) -> dict[str, Any]:
  """The holder record in an open lock file; {} when empty (released) or unreadable."""
  try:
    data = os.pread(fd, 4096, 0)
    holder = json.loads(data) if data.strip() else {}
  except (OSError, ValueError):
    return {}
  return holder if isinstance(holder, dict) else {}
