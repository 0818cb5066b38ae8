"""The result file's schema (`jestimator-bench/1`) and its validator.

  {
    "schema": "jestimator-bench/1",
    "suite": "quick", "created_utc": "2025-01-01T00:00:00Z", "command": "...", "wall_s": 212.4,
    "machine": {"backend", "device_kind", "device_count", "host_cpu", "host_cores",
                "host_memory_gib", "python", "versions": {...}},
    "workloads": {
      "<name>": {"description": str, "config": {...}, "budget": {...},
                 "cases": [{"case": str, "params": {...},
                            "jestimator": RUN, "baseline": RUN, "ratio": {key: float|null}}]}
                | {"description", "config", "skipped": reason}
                | {"description", "config", "error": traceback text}
    }
  }

RUN holds `_task.RUN_KEYS`: numbers (or null where not measurable, e.g. device memory on CPU),
`train_examples_per_sec_repeats` a list of numbers, `quality` {loss, accuracy, auc}.
"""
from __future__ import annotations

import numbers
from typing import Any, Mapping

from benchmarks.workloads._task import RATIO_KEYS, RUN_KEYS

SCHEMA = 'jestimator-bench/1'

_TOP_KEYS = ('schema', 'suite', 'created_utc', 'command', 'wall_s', 'machine', 'workloads')
_MACHINE_KEYS = ('backend', 'device_kind', 'device_count', 'host_cpu', 'host_cores', 'versions')
_NULLABLE = ('peak_device_mib', 'checkpoint_save_s')
_QUALITY_KEYS = ('loss', 'accuracy', 'auc')


def _is_number(x: Any) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def problems(result: Mapping[str, Any]) -> list[str]:
  """Everything wrong with `result` as a `jestimator-bench/1` document (empty when valid)."""
  errs: list[str] = []
  if not isinstance(result, Mapping):
    return [f'result must be a JSON object, got {type(result).__name__}']
  for k in _TOP_KEYS:
    if k not in result:
      errs.append(f'missing top-level key {k!r}')
  if result.get('schema') != SCHEMA:
    errs.append(f'schema must be {SCHEMA!r}, got {result.get("schema")!r}')
  machine = result.get('machine', {})
  for k in _MACHINE_KEYS:
    if k not in machine:
      errs.append(f'machine: missing {k!r}')
  workloads = result.get('workloads', {})
  if not isinstance(workloads, Mapping):
    return errs + ['workloads must be an object']
  for name, w in workloads.items():
    where = f'workloads.{name}'
    for k in ('description', 'config'):
      if k not in w:
        errs.append(f'{where}: missing {k!r}')
    kinds = [k for k in ('cases', 'cold_cases', 'skipped', 'error') if k in w]
    if len(kinds) != 1:
      errs.append(f'{where}: needs exactly one of cases / cold_cases / skipped / error, has '
                  f'{kinds}')
      continue
    if kinds[0] == 'cold_cases':
      errs.extend(_cold_problems(w['cold_cases'], where))
      continue
    if kinds[0] != 'cases':
      if not isinstance(w[kinds[0]], str):
        errs.append(f'{where}.{kinds[0]} must be a string')
      continue
    if not isinstance(w['cases'], list) or not w['cases']:
      errs.append(f'{where}.cases must be a non-empty list')
      continue
    seen = set()
    for i, case in enumerate(w['cases']):
      errs.extend(_case_problems(case, f'{where}.cases[{i}]'))
      if case.get('case') in seen:
        errs.append(f'{where}: duplicate case {case.get("case")!r}')
      seen.add(case.get('case'))
  return errs


def _case_problems(case: Mapping[str, Any], where: str) -> list[str]:
  errs = []
  if not isinstance(case.get('case'), str):
    errs.append(f'{where}.case must be a string')
  if not isinstance(case.get('params'), Mapping):
    errs.append(f'{where}.params must be an object')
  for runner in ('jestimator', 'baseline'):
    run = case.get(runner)
    if not isinstance(run, Mapping):
      errs.append(f'{where}.{runner} must be an object')
      continue
    for k in RUN_KEYS:
      if k not in run:
        errs.append(f'{where}.{runner}: missing {k!r}')
        continue
      v = run[k]
      if k == 'quality':
        if not isinstance(v, Mapping) or set(v) != set(_QUALITY_KEYS):
          errs.append(f'{where}.{runner}.quality must hold exactly {_QUALITY_KEYS}, got {v!r}')
        elif any(q is not None and not _is_number(q) for q in v.values()):
          errs.append(f'{where}.{runner}.quality values must be numbers or null, got {v!r}')
      elif k == 'train_examples_per_sec_repeats':
        if not isinstance(v, list) or not v or not all(_is_number(e) for e in v):
          errs.append(f'{where}.{runner}.{k} must be a non-empty list of numbers')
      elif v is None and k in _NULLABLE:
        pass
      elif not _is_number(v):
        errs.append(f'{where}.{runner}.{k} must be a number, got {v!r}')
      elif v < 0:
        errs.append(f'{where}.{runner}.{k} must be >= 0, got {v!r}')
    if all(_is_number(run.get(k)) for k in ('train_examples_per_sec_min', 'train_examples_per_sec',
                                            'train_examples_per_sec_max')):
      if not (run['train_examples_per_sec_min'] <= run['train_examples_per_sec']
              <= run['train_examples_per_sec_max']):
        errs.append(f'{where}.{runner}: train examples/sec median outside [min, max]')
  ratio = case.get('ratio')
  if not isinstance(ratio, Mapping) or set(ratio) != set(RATIO_KEYS):
    errs.append(f'{where}.ratio must hold exactly {RATIO_KEYS}')
  elif any(v is not None and not _is_number(v) for v in ratio.values()):
    errs.append(f'{where}.ratio values must be numbers or null')
  return errs


def _cold_problems(cases: Any, where: str) -> list[str]:
  """Problems of a `cold_start` workload's `cold_cases`."""
  from benchmarks.workloads.cold_start import COLD_KEYS, COLD_RATIO_KEYS, RUNNERS
  if not isinstance(cases, list) or not cases:
    return [f'{where}.cold_cases must be a non-empty list']
  errs = []
  for i, case in enumerate(cases):
    at = f'{where}.cold_cases[{i}]'
    if not isinstance(case.get('case'), str) or not isinstance(case.get('params'), Mapping):
      errs.append(f'{at} needs a case name and params')
    for runner in RUNNERS:
      run = case.get(runner)
      if not isinstance(run, Mapping) or set(run) != set(COLD_KEYS):
        errs.append(f'{at}.{runner} must hold exactly {COLD_KEYS}')
        continue
      bad = {k: v for k, v in run.items() if not _is_number(v) or (v < 0 and k != 'final_loss')}
      if bad:
        errs.append(f'{at}.{runner}: values must be numbers >= 0, got {bad}')
    wanted = {f'{r}/{k}' for r in RUNNERS[:2] for k in COLD_RATIO_KEYS}
    ratio = case.get('ratio')
    if not isinstance(ratio, Mapping) or set(ratio) != wanted:
      errs.append(f'{at}.ratio must hold exactly {sorted(wanted)}')
  return errs


def check(result: Mapping[str, Any]) -> None:
  """Raises ValueError listing every problem of `result` (see `problems`)."""
  errs = problems(result)
  if errs:
    raise ValueError('not a valid jestimator-bench/1 result:\n  ' + '\n  '.join(errs))
