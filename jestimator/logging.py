"""Turning jestimator's log output on and off: `set_verbosity(level)`.

Everything jestimator reports (progress lines of train / evaluate / predict, checkpoint saves,
evaluation results) goes to the standard `logging` logger named `'jestimator'`. Two ways to see it:

  import logging
  import jestimator
  jestimator.logging.set_verbosity(logging.INFO)   # works whatever else configured logging

  # or the standard way, which now works after `import jestimator` too:
  logging.basicConfig(level=logging.INFO)

As Python's convention asks of a library, `set_verbosity` only sets the `'jestimator'` logger's
level and adds no handler of its own for an application that configured logging: the records
propagate to the application's handlers, with its format (`basicConfig(format='%(message)s')`
prints the bare message). Only while the root logger has no handler at all does a fallback
handler print them to stderr as `INFO:jestimator:...` (Python's own last resort shows
warnings only). `set_verbosity(logging.WARNING)` (the default level of an unconfigured program)
silences progress lines, also the progress bar on a terminal.

Why `basicConfig` needed help: absl's logging (used by orbax at import) calls
`logging.basicConfig()` whenever it logs while the root logger has no handler, which made every
later `basicConfig(level=...)` of the user's a silent no-op. `import jestimator` removes a root
handler that was added during its own import (and only that one).
"""
from __future__ import annotations

import logging as _logging
import sys

LOGGER_NAME = 'jestimator'

DEBUG, INFO, WARNING, ERROR = _logging.DEBUG, _logging.INFO, _logging.WARNING, _logging.ERROR


def get_logger() -> _logging.Logger:
  """The `'jestimator'` logger."""
  return _logging.getLogger(LOGGER_NAME)


def set_verbosity(level: int | str) -> None:
  """Shows jestimator's messages at `level` and above on stderr (e.g. `logging.INFO`).

  Args:
    level: a `logging` level (int) or its name ('INFO', 'WARNING', ...).
  """
  if isinstance(level, str):
    value = _logging.getLevelName(level.upper())
    if not isinstance(value, int):
      raise ValueError(f'set_verbosity: unknown level name {level!r}; use DEBUG, INFO, WARNING, '
                       'ERROR or an int')
    level = value
  if not isinstance(level, int):
    raise TypeError(f'set_verbosity: level must be an int or a level name, got '
                    f'{type(level).__name__}')
  logger = get_logger()
  logger.setLevel(level)
  if not any(isinstance(h, _FallbackHandler) for h in logger.handlers):
    logger.addHandler(_FallbackHandler())


class _FallbackHandler(_logging.StreamHandler):
  """Prints to stderr only while the application configured no logging (no root handler);
  otherwise the record propagates to the application's handlers, which show it their way."""

  def __init__(self):
    super().__init__(sys.stderr)
    self.setFormatter(_logging.Formatter('%(levelname)s:%(name)s:%(message)s'))

  def emit(self, record: _logging.LogRecord) -> None:
    if not _logging.getLogger().handlers:
      self.stream = sys.stderr  # the current stderr (pytest and notebooks replace it)
      super().emit(record)


def get_verbosity() -> int:
  """The effective level of the `'jestimator'` logger."""
  return get_logger().getEffectiveLevel()


def root_handlers() -> list:
  """The root logger's handlers now (to compare before and after an import)."""
  return list(_logging.getLogger().handlers)


def undo_import_basic_config(before: list) -> None:
  """Removes root handlers added since `before` by a library's implicit `basicConfig()`.

  Only a plain stderr `StreamHandler` that was not there before is removed, so the user's own
  `logging.basicConfig(level=...)` after `import jestimator` takes effect.
  """
  root = _logging.getLogger()
  for h in list(root.handlers):
    if (h not in before and type(h) is _logging.StreamHandler
        and getattr(h, 'stream', None) is sys.stderr):
      root.removeHandler(h)


__all__ = ['set_verbosity', 'get_verbosity', 'get_logger', 'DEBUG', 'INFO', 'WARNING', 'ERROR']
