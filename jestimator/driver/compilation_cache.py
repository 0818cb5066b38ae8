"""JAX's persistent compilation cache, on by default for Estimator programs.

A second process building the same model finds its compiled programs on disk instead of compiling
them again. Where a cache directory is already set — `JAX_COMPILATION_CACHE_DIR` or
`jax.config.update('jax_compilation_cache_dir', ...)` — that one is used as it is. Otherwise the
Estimator sets `$XDG_CACHE_HOME/jestimator/jax_compilation_cache` (default
`~/.cache/jestimator/jax_compilation_cache`); `RunConfig(compilation_cache=False)` leaves JAX's
setting alone. The directory only holds compiled programs: deleting it is always safe (the next
run compiles again). The setting is process-wide, as JAX's cache is.
"""
from __future__ import annotations

import logging
import os

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

logger = logging.getLogger('jestimator')

#: Programs compiled faster than this are not written (JAX's default is 1 s, which would leave
#: out most eval and predict steps; below ~0.1 s reading the entry costs about as much).
MIN_COMPILE_SECS = 0.1


def default_dir() -> str:
  """`$XDG_CACHE_HOME/jestimator/jax_compilation_cache` (XDG default `~/.cache`)."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'jestimator', 'jax_compilation_cache')


def enable() -> str:
  """Turns the persistent cache on at `default_dir()` unless a directory is set; returns the
  directory in use."""
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current  # the user's choice wins
  path = default_dir()
  jax.config.update('jax_compilation_cache_dir', path)
  if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default: not chosen
    jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECS)
  # JAX decides once per process whether the cache is used, at its first compilation; one that
  # happened before this call (say a jnp op in data preparation) would keep it off.
  jax_cache.reset_cache()
  logger.info('JAX persistent compilation cache: %s', path)
  return path
