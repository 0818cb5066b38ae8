"""Ground truth computed by real TensorFlow 2.15.1 (see tests/data/tf_fixtures/README.md)."""
from __future__ import annotations

import functools
import json
import os

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'tf_fixtures')


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict:
  """The parsed JSON fixture `name` (e.g. 'hash_bucket.json')."""
  with open(os.path.join(DIR, name), encoding='utf-8') as f:
    return json.load(f)


def path(name: str) -> str:
  """Absolute path of fixture file `name`."""
  return os.path.join(DIR, name)
