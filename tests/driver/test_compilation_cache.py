"""JAX's persistent compilation cache: on by default, the user's directory wins, and it can be off.

Each case runs fresh processes (the cache is process-wide state) with their own cache locations.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REPO = os.path.dirname(_TESTS)

_SCRIPT = '''
import json, sys
import jax
import jax.numpy as jnp
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(1) if event == '/jax/compilation_cache/cache_hits' else None)
jnp.ones(3).sum()  # a compilation before the Estimator exists: the cache must still turn on
import _models
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig
x, y = _models.make_data(64)
est = Estimator(_models.linear_model_fn(), sys.argv[1],
                config=RunConfig(compilation_cache=sys.argv[2] == 'on'))
est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=16, shuffle=False), steps=2)
print(json.dumps({'dir': jax.config.jax_compilation_cache_dir, 'hits': len(hits)}))
'''


def _run(tmp_path, name, cache='on', env_dir=None):
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  env.update(XDG_CACHE_HOME=str(tmp_path / 'xdg'), HOME=str(tmp_path / 'home'),
             PYTHONPATH=os.pathsep.join([_REPO, _TESTS]))
  if env_dir:  # the user's settings (JAX's own minimum compile time would skip tiny programs)
    env.update(JAX_COMPILATION_CACHE_DIR=env_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  proc = subprocess.run([sys.executable, '-c', _SCRIPT, str(tmp_path / name), cache], env=env,
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _entries(path):
  return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_default_location_and_reuse_by_a_second_process(tmp_path):
  default = str(tmp_path / 'xdg' / 'jestimator' / 'jax_compilation_cache')
  first = _run(tmp_path, 'a')
  assert first['dir'] == default
  written = _entries(default)
  assert written, 'the first process wrote no compiled programs'
  second = _run(tmp_path, 'b')  # a new model_dir, the same programs
  assert second['hits'] > 0 and first['hits'] == 0
  assert not os.path.exists(tmp_path / 'home' / '.cache')


def test_user_directory_wins_and_switch_off(tmp_path):
  mine = str(tmp_path / 'mine')
  assert _run(tmp_path, 'a', env_dir=mine)['dir'] == mine
  assert _entries(mine) and not _entries(tmp_path / 'xdg')
  off = _run(tmp_path, 'b', cache='off')
  assert off['dir'] is None and not _entries(tmp_path / 'xdg')
