"""Shared fixtures of the core tests (models and data live in `tests/_models.py`)."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import jax
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `import _models` from any test directory

import _models  # noqa: E402

# Estimators turn on JAX's persistent compilation cache in ~/.cache unless a directory is set:
# tests (and the processes they start) use a temporary one instead.
_JAX_CACHE = tempfile.mkdtemp(prefix='jestimator-test-jax-cache-')
atexit.register(shutil.rmtree, _JAX_CACHE, True)
os.environ['JAX_COMPILATION_CACHE_DIR'] = _JAX_CACHE
jax.config.update('jax_compilation_cache_dir', _JAX_CACHE)

# Every program jit lowers to XLA records this event, whether or not the persistent compilation
# cache then supplies the executable (a cache hit skips the backend compile event).
_COMPILE_EVENT = '/jax/core/compile/jaxpr_to_mlir_module_duration'


class CompileCounter:
  """Counts programs compiled (lowered; a jax.monitoring event) since creation or `reset()`."""

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
