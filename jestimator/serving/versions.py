"""Model versions as TF Serving keeps them: a version policy over a polled base path.

A model's `base_path` holds numbered version folders (an exporter's `<timestamp>/` exports). The
policy says which to serve: `latest` (the newest N, TF Serving's default with N = 1), `all`, or
`specific` version numbers. `ModelVersions.poll()` (every `--file_system_poll_wait_seconds`)
loads versions that appear and unloads those that leave the policy. Requests take a snapshot of
the loaded versions, so a swap never drops one: an unloaded version finishes the requests it has.
A version that fails to load (damaged, tampered, half copied) is skipped with a warning naming it
and its error, and an older intact version keeps serving; at startup the newest intact versions
are served, and an error lists every failure when none loads.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Callable

from jestimator.serving import loader

logger = logging.getLogger('jestimator.serve')


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """Which versions to serve: `kind` 'latest' (newest `num_versions`), 'all' or 'specific'."""
  kind: str = 'latest'
  num_versions: int = 1
  versions: tuple[int, ...] = ()

  def __post_init__(self):
    if self.kind not in ('latest', 'all', 'specific'):
      raise ValueError(f"version policy must be 'latest', 'all' or 'specific', got {self.kind!r}")
    if self.kind == 'latest' and (isinstance(self.num_versions, bool) or
                                  not isinstance(self.num_versions, int) or self.num_versions < 1):
      raise ValueError(f'latest version policy needs num_versions >= 1, got {self.num_versions!r}')
    if self.kind == 'specific' and (not self.versions or not all(
        isinstance(v, int) and v >= 0 for v in self.versions)):
      raise ValueError(f'specific version policy needs version numbers, got {self.versions!r}')

  @classmethod
  def parse(cls, text: str) -> VersionPolicy:
    """From the CLI: 'latest', 'latest:N', 'all', or 'specific:V1,V2'."""
    kind, _, arg = text.strip().partition(':')
    try:
      if kind == 'latest':
        return cls('latest', int(arg) if arg else 1)
      if kind == 'specific':
        return cls('specific', versions=tuple(int(v) for v in arg.split(',') if v.strip()))
    except ValueError:
      pass
    else:
      if kind == 'all' and not arg:
        return cls('all')
    raise ValueError(f"version policy must be 'latest', 'latest:N', 'all' or 'specific:V1,V2', "
                     f'got {text!r}')

  def choose(self, available: list[int]) -> list[int]:
    """The versions to serve among `available` (newest first)."""
    available = sorted(available, reverse=True)
    if self.kind == 'latest':
      return available[:self.num_versions]
    if self.kind == 'all':
      return available
    return [v for v in available if v in self.versions]


def _on_disk(base_path: str) -> list[int]:
  try:
    names = os.listdir(base_path)
  except OSError:
    return []
  return [int(n) for n in names if n.isdigit() and loader.is_export(os.path.join(base_path,
                                                                                          n))]


class ModelVersions:
  """The loaded versions of one model (thread-safe).

  Args:
    name: the model name (NAME in the URLs).
    base_path: a folder of numbered exports, or one export (served as a fixed single version).
    policy: a `VersionPolicy`.
    load: `path -> model` (default `loader.load`), e.g. to warm up after loading.
  """

  def __init__(self, name: str, base_path: str, policy: VersionPolicy = VersionPolicy(),
               load: Callable[[str], loader.ServedModel] = loader.load):
    self.name, self.policy, self._load = name, policy, load
    self.base_path = os.path.abspath(os.fspath(base_path))
    self._lock = threading.Lock()  # one poll at a time; readers take `self._loaded` lock-free
    self._loaded: dict[int, loader.ServedModel] = {}
    self._failed: dict[int, float] = {}  # version -> mtime of its signature.json when it failed
    self.single = loader.is_export(self.base_path)
    if self.single:
      model = load(self.base_path)
      self._loaded = {model.version if model.version is not None else 1: model}
      return
    if not os.path.isdir(self.base_path):
      raise ValueError(f'model {name!r}: base path {self.base_path!r} does not exist')
    errors = self.poll()
    if not self._loaded:
      found = sorted(_on_disk(self.base_path), reverse=True)
      if not found:
        raise ValueError(f'model {name!r}: {self.base_path!r} is not a jestimator export and '
                         'holds no exports (<version>/ folders with signature.json)')
      detail = '; '.join(f'version {v}: {e}' for v, e in errors.items()) or 'none matches'
      raise ValueError(f'model {name!r}: no servable version under {self.base_path!r} for '
                       f'policy {self.policy} (found {found}): {detail}')

  def snapshot(self) -> dict[int, loader.ServedModel]:
    """The loaded versions now (a dict that later polls never change)."""
    return self._loaded

  def resolve(self, version: int | None = None
              ) -> tuple[int, loader.ServedModel] | None:
    """`(version, model)` for the given version, or the newest loaded one; None if not loaded."""
    loaded = self._loaded
    if version is None:
      version = max(loaded, default=None)
    model = loaded.get(version) if version is not None else None
    return None if model is None else (version, model)

  def get(self, version: int | None = None) -> loader.ServedModel | None:
    """The given version's model, or the newest loaded one; None when not loaded."""
    found = self.resolve(version)
    return found[1] if found else None

  def poll(self) -> dict[int, str]:
    """Loads the versions the policy wants and unloads the others; `{version: error}` of failures.

    With the 'latest' policy a version that fails to load is replaced by the next older one, so
    N intact versions serve when N exist.
    """
    if self.single:
      return {}
    with self._lock:
      available = _on_disk(self.base_path)
      errors: dict[int, str] = {}
      usable = [v for v in available if not self._still_failed(v)]
      loaded = dict(self._loaded)
      while True:
        wanted = self.policy.choose(usable)
        todo = [v for v in wanted if v not in loaded]
        if not todo:
          break
        for v in todo:
          path = os.path.join(self.base_path, str(v))
          try:
            loaded[v] = self._load(path)
            logger.info('Loaded model %r version %d from %s', self.name, v, path)
          except Exception as e:  # noqa: BLE001 - any damage; keep serving what works
            errors[v] = f'{type(e).__name__}: {e}'
            self._failed[v] = _mtime(path)
            usable.remove(v)
            logger.warning('Model %r version %d at %s cannot be loaded (%s); %s', self.name, v,
                           path, errors[v], 'serving the newest intact version instead'
                           if loaded else 'skipping it')
      for v in [v for v in loaded if v not in wanted]:
        logger.info('Unloading model %r version %d', self.name, v)
        del loaded[v]
      if loaded.keys() != self._loaded.keys():
        self._loaded = loaded  # one assignment: readers see the old or the new set, never a mix
      return errors

  def _still_failed(self, version: int) -> bool:
    """True for a version that failed and has not been rewritten since (no retry storms)."""
    when = self._failed.get(version)
    if when is None:
      return False
    if _mtime(os.path.join(self.base_path, str(version))) != when:
      del self._failed[version]
      return False
    return True


def _mtime(path: str) -> float:
  try:
    return os.stat(os.path.join(path, 'signature.json')).st_mtime
  except OSError:
    return -1.0
