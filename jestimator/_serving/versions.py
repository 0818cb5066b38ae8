"""Model versions as TF Serving keeps them: a version policy over a polled base path.

A model's `base_path` holds numbered version folders (an exporter's `<timestamp>/` exports). The
policy says which to serve: `latest` (the newest N, TF Serving's default with N = 1), `all`, or
`specific` version numbers. `ModelVersions.poll()` (every `--file_system_poll_wait_seconds`)
loads versions that appear and unloads those that leave the policy. Requests take a snapshot of
the loaded versions, so a swap never drops one: an unloaded version finishes the requests it has.
A version that fails to load (damaged, tampered, half copied) is skipped with a warning naming it
and its error, and an older intact version keeps serving; at startup the newest intact versions
are served, and an error lists every failure when none loads. A failed version is retried at once
when any of its files changes (a copy that was still under way), and otherwise every
`retry_interval_s`, `max_retries` times (TF Serving's `--load_retry_interval_micros` and
`--max_num_load_retries`); `failures()` lists the failed versions with their error, which the
model status reports as TF Serving does.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from typing import Callable

from jestimator.export import served_model

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
  return [int(n) for n in names if n.isdigit() and served_model.is_export(os.path.join(base_path,
                                                                                          n))]


@dataclasses.dataclass
class _Failure:
  """A version that failed to load: its error, its files then, and its retry schedule."""
  error: str
  files: tuple
  retries: int = 0  # scheduled retries done
  next_retry: float = math.inf  # time.monotonic() of the next scheduled retry


def _files(path: str) -> tuple:
  """`((relative path, size, mtime_ns), ...)` of a version folder: any change shows."""
  out = []
  for root, _, names in os.walk(path):
    for n in names:
      full = os.path.join(root, n)
      try:
        st = os.stat(full)
      except OSError:
        continue
      out.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
  return tuple(sorted(out))


class ModelVersions:
  """The loaded versions of one model (thread-safe).

  Args:
    name: the model name (NAME in the URLs).
    base_path: a folder of numbered exports, or one export (served as a fixed single version).
    policy: a `VersionPolicy`.
    load: `path -> model` (default `served_model.load`), e.g. to warm up after loading.
    retry_interval_s, max_retries: the retry schedule of a version that failed to load.
  """

  def __init__(self, name: str, base_path: str, policy: VersionPolicy = VersionPolicy(),
               load: Callable[[str], served_model.ServedModel] = served_model.load, *,
               retry_interval_s: float = 60.0, max_retries: int = 5):
    if not retry_interval_s >= 0 or isinstance(max_retries, bool) or \
        not isinstance(max_retries, int) or max_retries < 0:
      raise ValueError(f'load retries need retry_interval_s >= 0 and an integer max_retries >= '
                       f'0, got {retry_interval_s!r} and {max_retries!r}')
    self.name, self.policy, self._load = name, policy, load
    self.retry_interval_s, self.max_retries = float(retry_interval_s), max_retries
    self.base_path = os.path.abspath(os.fspath(base_path))
    self._lock = threading.Lock()  # one poll at a time; readers take `self._loaded` lock-free
    self._loaded: dict[int, served_model.ServedModel] = {}
    self._failed: dict[int, _Failure] = {}
    self._reported: set[int] = set()  # the versions the policy wants among those on disk
    self.single = served_model.is_export(self.base_path)
    if self.single:
      model = load(self.base_path)
      self._loaded = {model.version if model.version is not None else 1: model}
      return
    if os.path.isfile(self.base_path):
      raise ValueError(f'model {name!r}: base path {self.base_path!r} is a file, not a '
                       'directory: give the folder of numbered exports (or one export folder)')
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

  def snapshot(self) -> dict[int, served_model.ServedModel]:
    """The loaded versions now (a dict that later polls never change)."""
    return self._loaded

  def resolve(self, version: int | None = None
              ) -> tuple[int, served_model.ServedModel] | None:
    """`(version, model)` for the given version, or the newest loaded one; None if not loaded."""
    loaded = self._loaded
    if version is None:
      version = max(loaded, default=None)
    model = loaded.get(version) if version is not None else None
    return None if model is None else (version, model)

  def get(self, version: int | None = None) -> served_model.ServedModel | None:
    """The given version's model, or the newest loaded one; None when not loaded."""
    found = self.resolve(version)
    return found[1] if found else None

  def failures(self) -> dict[int, str]:
    """`{version: error}` of the versions the policy wants that failed to load (last error)."""
    return {v: f.error for v, f in sorted(self._failed.items()) if v in self._reported}

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
            self._failed.pop(v, None)
            logger.info('Loaded model %r version %d from %s', self.name, v, path)
          except Exception as e:  # noqa: BLE001 - any damage; keep serving what works
            errors[v] = f'{type(e).__name__}: {e}'
            self._record_failure(v, path, errors[v])
            usable.remove(v)
            logger.warning('Model %r version %d at %s cannot be loaded (%s); %s', self.name, v,
                           path, errors[v], 'serving the newest intact version instead'
                           if loaded else 'skipping it')
      for v in [v for v in loaded if v not in wanted]:
        logger.info('Unloading model %r version %d', self.name, v)
        del loaded[v]
      for v in [v for v in self._failed if v not in available]:
        del self._failed[v]
      self._reported = set(self.policy.choose(available))  # not older failures superseded
      if loaded.keys() != self._loaded.keys():
        self._loaded = loaded  # one assignment: readers see the old or the new set, never a mix
      return errors

  def _record_failure(self, version: int, path: str, error: str) -> None:
    before = self._failed.get(version)
    retries = before.retries + 1 if before is not None and \
        time.monotonic() >= before.next_retry else (before.retries if before else 0)
    due = (time.monotonic() + self.retry_interval_s if retries < self.max_retries
           else math.inf)
    self._failed[version] = _Failure(error, _files(path), retries, due)

  def _still_failed(self, version: int) -> bool:
    """True for a failed version that is neither rewritten since nor due for a retry."""
    failure = self._failed.get(version)
    if failure is None:
      return False
    if time.monotonic() >= failure.next_retry:
      logger.info('Retrying model %r version %d (retry %d of %d)', self.name, version,
                  failure.retries + 1, self.max_retries)
      return False
    return _files(os.path.join(self.base_path, str(version))) == failure.files
