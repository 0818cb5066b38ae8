"""Packaging as a new user meets it: a wheel that builds without deprecation warnings and holds
LICENSE, `py.typed` and the `jestimator-serve` script, one version, real types for mypy."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile

import pytest

import jestimator

pytestmark = pytest.mark.slow

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_USER_SCRIPT = '''\
import numpy as np
import jestimator as je
from jestimator import export

est = je.Estimator(lambda features, labels, mode: None, model_dir='unused')
reveal_type(est)
reveal_type(est.latest_checkpoint())
reveal_type(export.load('unused').predict({'x': np.zeros((2, 4))}))
est.train(lambda: None, steps='ten')
'''


def _copy_checkout(src) -> None:
  """Copies the tracked and new (not ignored) files to `src`, as a fresh clone would hold."""
  files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=_REPO, text=True,
                         capture_output=True, check=True).stdout.split()
  for f in files:
    if os.path.isfile(os.path.join(_REPO, f)):
      os.makedirs(src / os.path.dirname(f), exist_ok=True)
      shutil.copy2(os.path.join(_REPO, f), src / f)


def _bare_env(env_dir):
  """`(python, site-packages)` of a new venv that sees the test environment's dependencies
  (jax, numpy, pip, setuptools, ...) but not its own jestimator."""
  venv.create(env_dir, with_pip=False)
  python = env_dir / 'bin' / 'python'
  site = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()'
                         '["purelib"])'], capture_output=True, text=True, check=True).stdout.strip()
  deps = [p for p in sys.path if p.endswith('site-packages')]
  with open(os.path.join(site, 'deps.pth'), 'w') as f:
    f.write('\n'.join(deps) + '\n')
  return python, site


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  """`(path of the wheel, build output)`, built from a copy of the tracked and new files."""
  tmp = tmp_path_factory.mktemp('wheel')
  src = tmp / 'src'
  _copy_checkout(src)
  run = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                        '-w', str(tmp / 'dist'), str(src)], capture_output=True, text=True,
                       env={**os.environ, 'PYTHONWARNINGS': 'default'})
  assert run.returncode == 0, run.stdout + run.stderr
  (whl,) = (tmp / 'dist').iterdir()
  return str(whl), run.stdout + run.stderr


def test_wheel_builds_without_deprecation_warnings(wheel):
  _, log = wheel
  assert not re.search(r'deprecat', log, re.I), log


def test_wheel_holds_license_py_typed_and_console_script(wheel):
  path, _ = wheel
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    assert 'jestimator/py.typed' in names
    (lic,) = [n for n in names if n.endswith('.dist-info/licenses/LICENSE')]
    assert 'Apache License' in z.read(lic).decode() and 'Version 2.0' in z.read(lic).decode()
    meta = z.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    entry = z.read(next(n for n in names if n.endswith('.dist-info/entry_points.txt'))).decode()
  assert re.search(r'^License-Expression: Apache-2\.0$', meta, re.M)
  assert re.search(rf'^Version: {re.escape(jestimator.__version__)}$', meta, re.M)
  assert 'Classifier: Typing :: Typed' in meta
  assert re.search(r'^jestimator-serve = jestimator\.serve:main$', entry, re.M)


def test_version_has_one_source():
  with open(os.path.join(_REPO, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  assert 'version' not in project and 'version' in project['dynamic']
  with open(os.path.join(_REPO, 'CHANGELOG.md')) as f:
    assert f'## {jestimator.__version__}' in f.read()


def test_mypy_sees_real_types_in_an_installed_wheel(wheel, tmp_path):
  """A user script type-checked against the installed wheel (not the source tree)."""
  path, _ = wheel
  # The dependencies (jax, numpy, ...) come from the test environment, jestimator only from the
  # wheel: the test environment's own (editable) jestimator is not on this path.
  python, site = _bare_env(tmp_path / 'env')
  with zipfile.ZipFile(path) as z:
    z.extractall(site)
  script = tmp_path / 'user.py'
  script.write_text(_USER_SCRIPT)
  run = subprocess.run([sys.executable, '-m', 'mypy', '--python-executable', str(python),
                        '--cache-dir', str(tmp_path / 'cache'), '--no-error-summary', 'user.py'],
                       cwd=tmp_path, capture_output=True, text=True)
  out = run.stdout + run.stderr
  assert 'Revealed type is "jestimator.driver.estimator.Estimator"' in out, out
  assert 'Revealed type is "str | None"' in out, out
  assert re.search(r'Revealed type is "dict\[str, numpy\.ndarray', out), out
  assert re.search(r'"steps" to "train" of "Estimator" has incompatible type "str"', out), out
  assert 'py.typed' not in out and 'import-untyped' not in out, out


_MODULE_PATHS_SCRIPT = '''\
import jestimator as je
from jestimator.estimator import Estimator
from jestimator.hooks import Hook
from jestimator.mode_keys import ModeKeys
from jestimator.run_config import RunConfig

reveal_type(Hook)
reveal_type(ModeKeys.TRAIN)
reveal_type(RunConfig().seed)
reveal_type(je.export.load)
reveal_type(je.serving.load)
Estimator(lambda features, labels, mode: None, model_dir=3)
'''


def _editable_flags() -> list[str]:
  """The flags `make test` installs the project with (the Makefile's `EDITABLE_FLAGS`)."""
  with open(os.path.join(_REPO, 'Makefile')) as f:
    return re.search(r'^EDITABLE_FLAGS\s*:=\s*(.*)$', f.read(), re.M).group(1).split()


def test_mypy_sees_the_documented_module_paths_in_an_editable_install(tmp_path):
  """The project's own `make test` install (editable): mypy resolves `jestimator.hooks` etc."""
  src = tmp_path / 'src'
  _copy_checkout(src)
  python, _ = _bare_env(tmp_path / 'env')
  run = subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps',
                        '--no-build-isolation', '-e', str(src)] + _editable_flags(),
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stdout + run.stderr
  script = tmp_path / 'user.py'
  script.write_text(_MODULE_PATHS_SCRIPT)
  run = subprocess.run([sys.executable, '-m', 'mypy', '--python-executable', str(python),
                        '--cache-dir', str(tmp_path / 'cache'), '--no-error-summary', 'user.py'],
                       cwd=tmp_path, capture_output=True, text=True)
  out = run.stdout + run.stderr
  assert 'Cannot find implementation' not in out and 'import-untyped' not in out, out
  assert 'Revealed type is "def () -> jestimator.driver.hooks.Hook"' in out, out
  assert re.search(r'Revealed type is "(builtins\.)?str"', out), out
  assert 'Revealed type is "int | None"' in out, out
  assert out.count('-> jestimator.serving.loader.ServedModel"') == 2, out
  assert re.search(r'"model_dir" to "Estimator" has incompatible type "int"', out), out
