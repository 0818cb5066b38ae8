"""Shared fixtures of the core tests (models and data live in `tests/_models.py`)."""
from __future__ import annotations

import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `import _models` from any test directory

import _models  # noqa: E402

_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


class CompileCounter:
  """Counts XLA backend compilations (a jax.monitoring event) since creation or `reset()`."""

  def __init__(self):
    self.n = 0

  def __call__(self, event, duration, **kwargs):
    if event == _COMPILE_EVENT:
      self.n += 1

  def reset(self) -> None:
    self.n = 0


@pytest.fixture
def compile_counter():
  counter = CompileCounter()
  jax.monitoring.register_event_duration_secs_listener(counter)
  try:
    yield counter
  finally:
    jax.monitoring.unregister_event_duration_listener(counter)


@pytest.fixture
def data():
  """`(x [100, 4] float32, y [100] float32 in {0, 1})`."""
  return _models.make_data(100)


@pytest.fixture
def model_dir(tmp_path):
  return str(tmp_path / 'model')
