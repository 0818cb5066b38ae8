"""The package's layout rules (DESIGN.md), checked on the source tree and in a fresh process.

- No module imports another package's underscored names (`jestimator.x._y` is private to
  `jestimator.x`).
- The core (`jestimator/{model,pipeline,state,driver}`) never imports `columns` or `canned`.
- Serving (`export.load` and the REST server) runs in a process that never loaded the loops, and
  `import jestimator.serving` loads nothing of training (no Orbax, optax, flax, pandas,
  tensorboardX, driver or canned).
"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

import _models
import jestimator
from jestimator import export, inputs
from jestimator.estimator import Estimator

_PACKAGE = pathlib.Path(jestimator.__file__).parent
_REPO = _PACKAGE.parent
CORE = ('model', 'pipeline', 'state', 'driver')
LOOPS = ('jestimator.driver.train', 'jestimator.driver.evaluate', 'jestimator.driver.predict')


def _modules():
  """`(module name, package name, path)` for every module of jestimator."""
  for path in sorted(_PACKAGE.rglob('*.py')):
    parts = list(path.relative_to(_REPO).with_suffix('').parts)
    package = parts[:-1] if parts[-1] != '__init__' else parts[:-1]
    name = parts if parts[-1] != '__init__' else parts[:-1]
    yield '.'.join(name), '.'.join(package), path


def _imports(path: pathlib.Path, package: str):
  """Absolute names every import statement of a file names (`a.b` and `a.b.c` for
  `from a.b import c`), function-level (deferred) imports included."""
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] +
                        ([base] if base else []))
      yield node.lineno, base
      for alias in node.names:
        yield node.lineno, f'{base}.{alias.name}'


def _private_owner(name: str) -> tuple[str, str] | None:
  """`(package, private part)` of an underscored name, e.g. `('a.b', 'a.b._c')` for `a.b._c.d`.

  A name private to a module (`a.b.mod._f`) belongs to that module's package (`a.b`).
  """
  parts = name.split('.')
  for i, part in enumerate(parts):
    if part.startswith('_') and not part.startswith('__'):
      owner = parts[:i]
      if (_REPO.joinpath(*owner).with_suffix('.py')).is_file():
        owner = owner[:-1]
      return '.'.join(owner), '.'.join(parts[:i + 1])
  return None


def _may_import(package: str, name: str) -> bool:
  """Whether a module of `package` may import `name`: its own package's private names, or
  anything from inside a private package it belongs to."""
  owner = _private_owner(name)
  return owner is None or package == owner[0] or (package + '.').startswith(owner[1] + '.')


def test_scanner_sees_what_it_should():
  """The scanner itself, on a known tree: the checks below cannot pass vacuously."""
  found = {n: list(_imports(p, pkg)) for n, pkg, p in _modules()}
  assert 'jestimator.driver.estimator' in found and 'jestimator.columns.host' in found
  # jestimator.columns.host imports its own private _parse module: seen, and allowed.
  assert (any(name == 'jestimator.columns._parse' for _, name in found['jestimator.columns.host']))
  assert _private_owner('jestimator.columns._parse') == ('jestimator.columns',
                                                        'jestimator.columns._parse')
  assert _private_owner('jestimator.export._tensors.write')[0] == 'jestimator.export'
  assert _private_owner('jestimator.export.artifact.export_estimator') is None
  assert not _may_import('jestimator.export', 'jestimator.pipeline.batches._leading')
  assert not _may_import('jestimator._serving', 'jestimator.export._tensors')
  assert _may_import('jestimator.distributed', 'jestimator.distributed.training._Evaluator')
  assert _may_import('jestimator', 'jestimator.serving.server')


def test_no_module_imports_another_packages_underscored_names():
  bad = []
  for module, package, path in _modules():
    for line, name in _imports(path, package):
      if not name.startswith('jestimator'):
        continue
      if not _may_import(package, name):
        bad.append(f'{path.relative_to(_REPO)}:{line} imports {name}')
  assert not bad, '\n'.join(bad)


def test_core_never_imports_columns_or_canned():
  bad = []
  for module, package, path in _modules():
    if package.split('.')[1:2] and package.split('.')[1] in CORE:
      for line, name in _imports(path, package):
        if name.startswith(('jestimator.columns', 'jestimator.canned')):
          bad.append(f'{path.relative_to(_REPO)}:{line} imports {name}')
  assert not bad, '\n'.join(bad)
  assert {m.split('.')[1] for m, p, _ in _modules() if p.count('.') >= 1} >= set(CORE)


_SERVE_SCRIPT = '''
import json, sys
import numpy as np
import jestimator.export
from jestimator.serve import ModelServer
model = jestimator.export.load(sys.argv[1])
out = model.predict({'x': np.asarray(json.loads(sys.argv[2]), np.float32)}, 'serving_default')
server = ModelServer(sys.argv[1], 'm', port=0)  # the REST server, built but not started
print(json.dumps({'out': {k: np.asarray(v).tolist() for k, v in out.items()},
                  'modules': sorted(sys.modules)}))
'''

# What a serving process must never import: the training side and its heavy libraries.
TRAINING_ONLY = ('orbax', 'pandas', 'tensorboardX', 'optax', 'flax', 'jestimator.driver',
                 'jestimator.canned', 'jestimator.distributed', 'jestimator.state')


def _training_modules(modules) -> list[str]:
  return [m for m in modules if m in LOOPS or any(m == p or m.startswith(p + '.')
                                                  for p in TRAINING_ONLY)]


def test_importing_serving_loads_nothing_of_training():
  script = ('import json, sys\n'
            'import jestimator.serving, jestimator.serve\n'
            'from jestimator.serving import ModelServer, load\n'
            'print(json.dumps(sorted(sys.modules)))\n')
  env = dict(os.environ, PYTHONPATH=str(_REPO))
  proc = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  modules = json.loads(proc.stdout.strip().splitlines()[-1])
  assert 'jestimator.serving.loader' in modules and 'jax' in modules  # the scan sees imports
  assert _training_modules(['orbax.checkpoint', 'jestimator.driver.train', 'flax']) == [
      'orbax.checkpoint', 'jestimator.driver.train', 'flax']
  assert not _training_modules(modules), _training_modules(modules)


def test_export_load_and_server_never_import_the_loops(tmp_path):
  x, y = _models.make_data(64)
  est = Estimator(_models.linear_model_fn(), str(tmp_path / 'model'))
  est.train(inputs.numpy_input_fn({'x': x}, y, batch_size=16, shuffle=False), steps=4)
  path = est.export_saved_model(
      str(tmp_path / 'export'), export.build_raw_serving_input_fn({'x': ('float32', [4])}))
  want = next(est.predict(inputs.numpy_input_fn({'x': x[:3]}, shuffle=False),
                          yield_single_examples=False))
  env = dict(os.environ, PYTHONPATH=str(_REPO))
  proc = subprocess.run([sys.executable, '-c', _SERVE_SCRIPT, path, json.dumps(x[:3].tolist())],
                        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  doc = json.loads(proc.stdout.strip().splitlines()[-1])
  assert 'jestimator.serving.loader' in doc['modules']
  assert 'jestimator.serve' in doc['modules']
  loaded = _training_modules(doc['modules'])
  assert not loaded, f'serving imported the training side {loaded}'
  got = doc['out']
  common = set(got) & set(want)
  assert common
  for key in common:
    np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), atol=1e-6)


def test_no_undefined_or_shadowed_names():
  """pyflakes over the package, benchmarks, examples and tests: an undefined name (a dropped
  import) is a NameError only on the path that uses it, which a merge can break unseen."""
  from pyflakes import api, reporter

  class Collect(reporter.Reporter):
    def __init__(self):
      super().__init__(None, None)
      self.found = []

    def flake(self, message):
      line = open(message.filename).read().splitlines()[message.lineno - 1]
      if 'imported but unused' in str(message) and 'noqa: F401' in line:
        return  # a deliberate re-export
      if 'import *' in str(message) and 'noqa: F401,F403' in line:
        return  # a documented module path re-exporting its implementation's names
      self.found.append(str(message))

    def unexpectedError(self, filename, msg):
      self.found.append(f'{filename}: {msg}')

    def syntaxError(self, filename, msg, lineno, offset, text):
      self.found.append(f'{filename}:{lineno}: {msg}')

  collect = Collect()
  api.checkRecursive([os.path.join(_REPO, d) for d in ('jestimator', 'benchmarks', 'examples',
                                                       'tests')], collect)
  assert not collect.found, '\n'.join(collect.found)
