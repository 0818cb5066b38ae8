"""Every code block of README.md and docs/*.md runs as written, so the docs cannot rot.

Each document runs in a fresh, empty working directory:
- ```python blocks run in order in one Python subprocess (later blocks see earlier names);
- ```bash / ```sh blocks run with `bash -e -o pipefail`, with this environment's scripts
  (`python`, `jestimator-serve`) first on PATH and `curl` made strict (`--fail-with-body`, so an
  HTTP error fails the block); a block that starts the server (`jestimator-serve ...`) runs in
  the background until it prints `Serving ...`, and is stopped with SIGTERM (exit status 0
  required) when the next server starts or the document ends. The documented port 8501 is
  replaced by a free port (the only edit), so parallel runs cannot collide;
- ```text blocks are not code (folder layouts, outputs); ```python-tf blocks are TensorFlow code
  shown for comparison: compiled (syntax) but not run, since TensorFlow is not a dependency;
- any other fence (or none) fails the test, so every block is one of the above.
Commands that cannot run inside the test suite are listed in `_NOT_RUN` with the reason and are
checked another way; nothing else is skipped.
"""
import glob
import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOCS = ['README.md'] + sorted(os.path.relpath(p, _REPO)
                               for p in glob.glob(os.path.join(_REPO, 'docs', '*.md')))
_FENCE = re.compile(r'^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```\s*$',
                    re.M | re.S)
_SERVER = re.compile(r'^(jestimator-serve|python -m jestimator\.serve)\b')
# Commands that cannot run inside the suite, and how each is checked instead.
_NOT_RUN = {
    'make demo': 'installs into .venv and runs examples/census_wide_and_deep.py, which '
                 'tests/test_examples.py runs; checked with `make -n demo`',
    'make test': 'would run this test suite inside itself; checked with `make -n test`',
    'make test-quick': 'idem; checked with `make -n test-quick`',
    "pip install '.[test]'": 'installs into the environment running the tests; the wheel is built '
                             'and inspected by tests/test_packaging.py',
    'pip install .': 'idem',
}
_BLOCK_TIMEOUT_S = 600

_DRIVER = r'''
import json, os, sys, traceback
ctl = os.fdopen(int(sys.argv[1]), 'w')
ns = {'__name__': '__main__'}
for line in sys.stdin:
  block = json.loads(line)
  try:
    exec(compile(block['source'], block['name'], 'exec'), ns)
    ctl.write(json.dumps({'ok': True}) + '\n')
  except BaseException:
    ctl.write(json.dumps({'ok': False, 'error': traceback.format_exc()}) + '\n')
  ctl.flush()
'''


def blocks(doc: str) -> list[tuple[str, int, str]]:
  """`[(language, line number, source)]` of the fenced blocks of `doc` (indentation removed)."""
  text = open(os.path.join(_REPO, doc)).read()
  out = []
  for m in _FENCE.finditer(text):
    indent = len(m.group('indent'))
    body = ''.join(line[indent:] for line in m.group('body').splitlines(keepends=True))
    out.append((m.group('info').strip(), text.count('\n', 0, m.start()) + 1, body))
  return out


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class _Runner:
  """Runs one document's blocks in `cwd`; see the module docstring."""

  def __init__(self, doc: str, cwd: str):
    self.doc, self.cwd = doc, cwd
    self.port = str(_free_port())
    bin_dir = os.path.join(cwd, '.bin')
    os.makedirs(bin_dir)
    real_curl = subprocess.run(['bash', '-c', 'command -v curl'], capture_output=True,
                               text=True).stdout.strip()
    with open(os.path.join(bin_dir, 'curl'), 'w') as f:
      f.write(f'#!/bin/sh\nexec {real_curl} --fail-with-body --silent --show-error "$@"\n')
    os.chmod(os.path.join(bin_dir, 'curl'), stat.S_IRWXU)
    self.env = dict(os.environ, PATH=os.pathsep.join(
        [bin_dir, os.path.dirname(sys.executable), os.environ.get('PATH', '')]))
    self.log = open(os.path.join(cwd, '.python.log'), 'w+')
    ctl_r, ctl_w = os.pipe()
    self.python = subprocess.Popen([sys.executable, '-c', _DRIVER, str(ctl_w)], cwd=cwd,
                                   env=self.env, stdin=subprocess.PIPE, stdout=self.log,
                                   stderr=subprocess.STDOUT, pass_fds=(ctl_w,), text=True)
    os.close(ctl_w)
    self.ctl = os.fdopen(ctl_r)
    self.server = None

  def run(self, lang: str, line: int, source: str) -> None:
    where = f'{self.doc}:{line}'
    if lang == 'python':
      self.python.stdin.write(json.dumps({'source': source, 'name': where}) + '\n')
      self.python.stdin.flush()
      ready, _, _ = select.select([self.ctl], [], [], _BLOCK_TIMEOUT_S)
      assert ready, f'{where}: the Python block did not finish in {_BLOCK_TIMEOUT_S} s'
      result = json.loads(self.ctl.readline() or '{"ok": false, "error": "the driver died"}')
      if not result['ok']:
        self.log.seek(0)
        pytest.fail(f'{where}: the Python block failed:\n{result["error"]}\n'
                    f'output:\n{self.log.read()[-3000:]}')
    elif lang in ('bash', 'sh'):
      self._shell(where, source.replace('8501', self.port))
    elif lang == 'python-tf':
      compile(source, where, 'exec')
    else:
      assert lang == 'text', f'{where}: unknown fence {lang!r}; use python, bash, text or python-tf'

  def _shell(self, where: str, source: str) -> None:
    commands = [c for c in source.splitlines() if c.strip() and not c.lstrip().startswith('#')]
    if _SERVER.match(commands[0] if commands else ''):
      assert len(commands) == 1, f'{where}: a server block holds only the server command'
      self._start_server(where, commands[0].split('  #')[0])
      return
    not_run = [c.split('  #')[0].strip() for c in commands]
    not_run = [c for c in not_run if c in _NOT_RUN]
    if not_run:
      assert len(not_run) == len(commands), (
          f'{where}: keep the commands that are not run ({not_run}) in a block of their own')
      for cmd in not_run:
        if cmd.startswith('make '):
          subprocess.run(['make', '-n', '-C', _REPO] + cmd.split()[1:], check=True,
                         capture_output=True)
      return
    run = subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', source], cwd=self.cwd,
                         env=self.env, capture_output=True, text=True, timeout=_BLOCK_TIMEOUT_S)
    assert run.returncode == 0, (f'{where}: the shell block failed ({run.returncode}):\n{source}\n'
                                 f'stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}')

  def _start_server(self, where: str, command: str) -> None:
    self.stop_server()
    # Output goes to a file, not a pipe nobody reads (a full pipe would block the server).
    log = os.path.join(self.cwd, f'.server-{len(os.listdir(self.cwd))}.log')
    self.server_log = open(log, 'w+')
    self.server = subprocess.Popen(['bash', '-c', 'exec ' + command], cwd=self.cwd, env=self.env,
                                   stdout=self.server_log, stderr=subprocess.STDOUT)
    self.server_where = where
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
      self.server_log.seek(0)
      out = self.server_log.read()
      if re.search(rf'^Serving .* at http://127\.0\.0\.1:{self.port}$', out, re.M):
        return
      if self.server.poll() is not None:
        break
      time.sleep(0.1)
    pytest.fail(f'{where}: the server did not start:\n{out[-3000:]}')

  def stop_server(self) -> None:
    if self.server is None:
      return
    self.server.send_signal(signal.SIGTERM)
    try:
      code = self.server.wait(timeout=120)
    finally:
      self.server.kill()
      self.server_log.seek(0)
      out = self.server_log.read()
      self.server_log.close()
    assert code == 0, (f'{self.server_where}: the server exited with {code} on SIGTERM:\n'
                       f'{out[-3000:]}')
    self.server = None

  def close(self) -> None:
    try:
      self.stop_server()
    finally:
      self.python.stdin.close()
      self.python.wait(timeout=60)
      self.ctl.close()
      self.log.close()


def test_every_fence_is_known():
  for doc in _DOCS:
    for lang, line, _ in blocks(doc):
      assert lang in ('python', 'bash', 'sh', 'text', 'python-tf'), f'{doc}:{line}: {lang!r}'


@pytest.mark.parametrize('doc', _DOCS)
def test_doc_runs_as_written(doc, tmp_path):
  found = blocks(doc)
  assert found, f'{doc} has no code blocks'
  runner = _Runner(doc, str(tmp_path))
  try:
    for lang, line, source in found:
      runner.run(lang, line, source)
  finally:
    runner.close()


def test_porting_guide_examples_show_and_check_their_output():
  """Every porting-guide example that prints shows the expected output (a ```text block right
  after it) and asserts its numbers, so a model that trains to nothing fails the docs test (the
  census example once printed accuracy 0.76 = the base rate and AUC 0.338, and passed)."""
  found = blocks('docs/porting_from_tf_estimator.md')
  printing = 0
  for i, (lang, line, source) in enumerate(found):
    if lang != 'python' or 'print(' not in source:
      continue
    printing += 1
    assert i + 1 < len(found) and found[i + 1][0] == 'text', (
        f'docs/porting_from_tf_estimator.md:{line}: an example that prints must be followed by a '
        '```text block with its expected output')
    assert re.search(r'^assert ', source, re.M), (
        f'docs/porting_from_tf_estimator.md:{line}: an example must assert the numbers it shows')
    if 'evaluate(' in source:
      asserts = ' '.join(m.group(0) for m in re.finditer(r'^assert .*$', source, re.M))
      for key in ('accuracy', 'auc') if 'Classifier' in source else ('accuracy',):
        assert f"metrics['{key}']" in asserts, (
            f'docs/porting_from_tf_estimator.md:{line}: the evaluation must check {key!r}')
  assert printing >= 3
