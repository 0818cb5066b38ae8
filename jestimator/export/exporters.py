"""Exporters for `train_and_evaluate`: export after evaluations into `model_dir/export/<name>/`.

Each has a `name` and `export(estimator, export_path, checkpoint_path, eval_result,
is_the_final_export) -> path or None`, where `export_path` is `model_dir/export/<name>`, as TF's
`tf.estimator.Exporter`. Exports land in `export_path/<timestamp>/` (see `export_saved_model`).
The constructors take TF's arguments in TF's order (`name, serving_input_receiver_fn,
assets_extra, as_text, exports_to_keep`; `BestExporter` with `event_file_pattern` and `compare_fn`
third and fourth), the receiver function named `serving_input_fn`, then jestimator's `platforms`.
"""
from __future__ import annotations

import abc
import inspect
import json
import logging
import os
import shutil
from typing import Any, Callable, Mapping

import numpy as np

logger = logging.getLogger('jestimator')

BEST_RESULT_FILE = 'best_eval_result.json'
DEFAULT_EVENT_FILE_PATTERN = 'eval/*.tfevents.*'  # TF's BestExporter default


class Exporter(abc.ABC):
  """Base class: decides whether to export after an evaluation, and exports."""

  @property
  @abc.abstractmethod
  def name(self) -> str:
    """Directory name under `model_dir/export/`."""

  @abc.abstractmethod
  def export(self, estimator, export_path: str, checkpoint_path: str | None,
             eval_result: Mapping[str, Any] | None, is_the_final_export: bool) -> str | None:
    """Exports (or not); returns the new export's path, or None when it did not export."""

  def check(self, estimator) -> None:
    """Raises when this exporter cannot export `estimator`'s model (no checkpoint needed).

    `train_and_evaluate` calls it before the first training step; the default checks nothing.
    """


def _check_name(name: Any) -> str:
  if not isinstance(name, str) or not name or os.sep in name or name in ('.', '..'):
    raise ValueError(f'exporter name must be a non-empty folder name, got {name!r}')
  return name


def _check_keep(exports_to_keep: Any) -> int | None:
  if exports_to_keep is not None and (not isinstance(exports_to_keep, (int, np.integer)) or
                                      isinstance(exports_to_keep, bool) or exports_to_keep <= 0):
    raise ValueError(f'exports_to_keep must be a positive integer or None, got {exports_to_keep!r}')
  return None if exports_to_keep is None else int(exports_to_keep)


def _versions(export_path: str) -> list[int]:
  """The exports' versions: only 10-digit timestamp folders count (TF's `_export_version_parser`),
  so a hand-made `1/` beside them is never garbage-collected."""
  if not os.path.isdir(export_path):
    return []
  return sorted(int(n) for n in os.listdir(export_path)
                if len(n) == 10 and n.isascii() and n.isdigit())


def garbage_collect(export_path: str, exports_to_keep: int | None) -> list[str]:
  """Deletes all but the newest `exports_to_keep` `<timestamp>/` exports; returns the deleted."""
  if exports_to_keep is None:
    return []
  deleted = []
  for v in _versions(export_path)[:-exports_to_keep]:
    path = os.path.join(export_path, str(v))
    shutil.rmtree(path, ignore_errors=True)
    deleted.append(path)
  return deleted


class _SavedModelExporter(Exporter):
  def __init__(self, name: str, serving_input_fn: Callable | None, assets_extra, as_text,
               platforms):
    self._name = _check_name(name)
    if serving_input_fn is not None and not callable(serving_input_fn):
      raise TypeError('serving_input_fn must be callable or None, got '
                      f'{type(serving_input_fn).__name__}')
    if not isinstance(as_text, bool):  # a misplaced positional argument, e.g. exports_to_keep
      raise TypeError(f'as_text must be a bool, got {as_text!r}')
    if assets_extra is not None and not isinstance(assets_extra, Mapping):
      raise TypeError('assets_extra must be a dict {destination: source file} or None, got '
                      f'{assets_extra!r}')
    self._serving_input_fn = serving_input_fn
    self._assets_extra = assets_extra
    self._as_text = as_text
    self._platforms = platforms

  @property
  def name(self) -> str:
    return self._name

  def check(self, estimator) -> None:
    from jestimator.export import artifact  # deferred: loads jax.export only when exporting
    artifact.check_exportable(estimator, self._serving_input_fn, self._platforms,
                              self._assets_extra)

  def _export(self, estimator, export_path: str, checkpoint_path: str | None) -> str:
    return estimator.export_saved_model(export_path, serving_input_fn=self._serving_input_fn,
                                        assets_extra=self._assets_extra, as_text=self._as_text,
                                        checkpoint_path=checkpoint_path,
                                        platforms=self._platforms)


class LatestExporter(_SavedModelExporter):
  """Exports after every evaluation and keeps the newest `exports_to_keep` (None: all).

  Example: `LatestExporter('latest', exports_to_keep=3)`. `assets_extra` and `as_text` as
  `Estimator.export_saved_model`.
  """

  def __init__(self, name: str, serving_input_fn: Callable | None = None,
               assets_extra: Mapping[str, str] | None = None, as_text: bool = False,
               exports_to_keep: int | None = 5, platforms=None):
    super().__init__(name, serving_input_fn, assets_extra, as_text, platforms)
    self._keep = _check_keep(exports_to_keep)

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    path = self._export(estimator, export_path, checkpoint_path)
    garbage_collect(export_path, self._keep)
    return path


class FinalExporter(_SavedModelExporter):
  """Exports once, after the final evaluation of `train_and_evaluate`."""

  def __init__(self, name: str, serving_input_fn: Callable | None = None,
               assets_extra: Mapping[str, str] | None = None, as_text: bool = False,
               platforms=None):
    super().__init__(name, serving_input_fn, assets_extra, as_text, platforms)

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    if not is_the_final_export:
      return None
    return self._export(estimator, export_path, checkpoint_path)


def loss_smaller(best_eval_result: Mapping[str, Any], current_eval_result: Mapping[str, Any]
                 ) -> bool:
  """BestExporter's default: True when the current `loss` is smaller than the best one (TF's)."""
  for name, result in (('best_eval_result', best_eval_result),
                       ('current_eval_result', current_eval_result)):
    if not result or 'loss' not in result:
      raise ValueError(f'{name} must be a dict with a "loss" entry, got {result!r}')
  return best_eval_result['loss'] > current_eval_result['loss']


class BestExporter(_SavedModelExporter):
  """Exports when an evaluation beats the best one so far, by `compare_fn`.

  The best result is kept on disk (`export_path/best_eval_result.json`; TF reads it back from the
  evaluation event files), so a restarted job keeps comparing against it. Keeps the newest
  `exports_to_keep` exports (None: all). When there is no best result yet (the first export, or
  an empty / None evaluation result before) it exports, as TF.

  Args:
    name: folder under `model_dir/export/`.
    serving_input_fn: as `export_saved_model` (optional with feature columns).
    event_file_pattern: a pattern (TF's default `'eval/*.tfevents.*'`) keeps the best result
      across restarts, here in `best_eval_result.json` whatever the pattern (TF reads it back from
      the matching event files); None forgets it, as TF does without event files.
    compare_fn: called as `compare_fn(best_eval_result=..., current_eval_result=...)` (by
      keyword, as TF: it must name exactly these two parameters), True when current is better;
      default `loss_smaller`.
    assets_extra, as_text: as `Estimator.export_saved_model`.
    exports_to_keep: how many exports to keep.
  """

  def __init__(self, name: str = 'best_exporter', serving_input_fn: Callable | None = None,
               event_file_pattern: str | None = DEFAULT_EVENT_FILE_PATTERN,
               compare_fn: Callable[..., bool] = loss_smaller,
               assets_extra: Mapping[str, str] | None = None, as_text: bool = False,
               exports_to_keep: int | None = 5, platforms=None):
    super().__init__(name, serving_input_fn, assets_extra, as_text, platforms)
    if event_file_pattern is not None and not isinstance(event_file_pattern, str):
      raise TypeError(f'event_file_pattern must be a string or None, got {event_file_pattern!r}')
    _verify_compare_fn_args(compare_fn)
    self._compare = compare_fn
    self._keep = _check_keep(exports_to_keep)
    self._restore = event_file_pattern is not None
    self._best: dict | None = None
    self._loaded_from: str | None = None

  def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
    if eval_result is not None and not isinstance(eval_result, Mapping):
      raise TypeError(f'BestExporter needs the evaluation result dict, got {eval_result!r}')
    if self._loaded_from != export_path:
      self._best = _read_best(export_path) if self._restore else None
      self._loaded_from = export_path
    current = None if eval_result is None else _jsonable(eval_result)
    if self._best is not None and not self._compare(best_eval_result=self._best,
                                                    current_eval_result=current):
      return None
    path = self._export(estimator, export_path, checkpoint_path)
    self._best = current
    _write_best(export_path, {'eval_result': current, 'export_path': path})
    garbage_collect(export_path, self._keep)
    return path


def _verify_compare_fn_args(compare_fn) -> None:
  """TF's `_verify_compare_fn_args`: exactly the keyword parameters best_eval_result and
  current_eval_result (a function written with other names would be called wrongly)."""
  if compare_fn is None:
    raise ValueError('`compare_fn` must not be None.')
  if not callable(compare_fn):
    raise TypeError(f'compare_fn must be callable, got {type(compare_fn).__name__}')
  args = {p.name for p in inspect.signature(compare_fn).parameters.values()
          if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
  for name in ('best_eval_result', 'current_eval_result'):
    if name not in args:
      raise ValueError(f'compare_fn ({compare_fn}) must include {name} argument.')
  extra = sorted(args - {'best_eval_result', 'current_eval_result'})
  if extra:
    raise ValueError(f'compare_fn ({compare_fn}) has following not expected args: {extra}')


def _jsonable(result: Mapping[str, Any]) -> dict:
  """The evaluation result as JSON values; NaN stays a float (JSON `NaN`), compared as TF does."""
  out = {}
  for k, v in result.items():
    if isinstance(v, (bytes, np.bytes_)):
      v = bytes(v).decode('utf-8', 'replace')
    elif isinstance(v, (np.ndarray, np.generic)):
      v = v.tolist()
    out[str(k)] = v
  return out


def _read_best(export_path: str) -> dict | None:
  file = os.path.join(export_path, BEST_RESULT_FILE)
  if not os.path.isfile(file):
    return None
  try:
    with open(file) as f:
      return json.load(f)['eval_result']
  except (ValueError, KeyError) as e:
    logger.warning('Ignoring unreadable %s (%s): the next evaluation becomes the best', file, e)
    return None


def _write_best(export_path: str, doc: dict) -> None:
  os.makedirs(export_path, exist_ok=True)
  file = os.path.join(export_path, BEST_RESULT_FILE)
  tmp = file + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(doc, f, indent=1, default=str)
  os.replace(tmp, file)
