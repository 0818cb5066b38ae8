"""The export manifest: a SHA-256 of every file of an export, written last and checked at load.

`manifest.json` is `{"algorithm": "sha256", "files": {relative path: hex digest}}` over every
regular file of the export except itself. Loading fails, naming the file, when a listed file is
missing or differs, or when a file the manifest does not list is present (an injected vocabulary
or program). Symbolic links are refused: an export holds its files, it does not point elsewhere.
"""
from __future__ import annotations

import hashlib
import json
import os

FILE = 'manifest.json'
_CHUNK = 1 << 20


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(_CHUNK):
      h.update(chunk)
  return h.hexdigest()


def _files(directory: str) -> list[str]:
  """Relative paths of every file under `directory` (but the manifest); ValueError on a link."""
  out = []
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      full = os.path.join(root, name)
      if os.path.islink(full):
        raise ValueError(f'{full} is a symbolic link; an export holds its own files')
    out += [os.path.relpath(os.path.join(root, f), directory).replace(os.sep, '/') for f in files]
  return sorted(f for f in out if f != FILE)


def write(directory: str) -> None:
  """Writes `directory/manifest.json` over the files now in `directory`."""
  doc = {'algorithm': 'sha256',
         'files': {f: _digest(os.path.join(directory, f)) for f in _files(directory)}}
  with open(os.path.join(directory, FILE), 'w') as f:
    json.dump(doc, f, indent=1)


def verify(directory: str) -> None:
  """Checks the files of `directory` against its manifest; ValueError naming the first mismatch."""
  path = os.path.join(directory, FILE)
  try:
    with open(path) as f:
      doc = json.load(f)
    listed = doc['files']
    if doc.get('algorithm') != 'sha256' or not isinstance(listed, dict):
      raise ValueError('unknown layout')
  except FileNotFoundError:
    raise ValueError(f'{directory!r} has no {FILE}: the export is incomplete or was not written by '
                     'this jestimator; export it again') from None
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'{path} is damaged ({e}); export again') from None
  present = _files(directory)
  extra = sorted(set(present) - set(listed))
  if extra:
    raise ValueError(f'{os.path.join(directory, extra[0])} is not listed in {path}: files were '
                     'added to the export after it was written')
  for name, digest in sorted(listed.items()):
    file = os.path.join(directory, name)
    if not os.path.isfile(file):
      raise ValueError(f'{file} is missing: the export is damaged (listed in {path})')
    if _digest(file) != digest:
      raise ValueError(f'{file} does not match its SHA-256 in {path}: the file was changed or '
                       'damaged after export')
