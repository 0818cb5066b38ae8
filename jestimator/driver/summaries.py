"""TensorBoard event files (tensorboardX; no TensorFlow needed) and JSON evaluation records."""
from __future__ import annotations

import json
import os
from typing import Mapping

import jax
import numpy as np

EVAL_RESULTS_FILE = 'eval_results.jsonl'


class SummaryWriter:
  """Writes scalars to `logdir`, created on first write; a no-op on processes other than 0."""

  def __init__(self, logdir: str):
    self.logdir = logdir
    self._writer = None

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if jax.process_index() != 0:
      return
    if self._writer is None:
      from tensorboardX import SummaryWriter as _TBWriter
      os.makedirs(self.logdir, exist_ok=True)
      self._writer = _TBWriter(self.logdir, flush_secs=10)
    for name, value in values.items():
      arr = np.asarray(value)
      if arr.ndim == 0 and np.issubdtype(arr.dtype, np.number):
        self._writer.add_scalar(name, float(arr), global_step=int(step))

  def text(self, step: int, tag: str, text: str) -> None:
    if jax.process_index() == 0 and self._writer is not None:
      self._writer.add_text(tag, text, global_step=int(step))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def append_eval_results(eval_dir: str, step: int, results: Mapping[str, object],
                        checkpoint_path: str | None) -> None:
  """Appends one evaluation to `eval_dir/eval_results.jsonl` (read by early stopping)."""
  if jax.process_index() != 0:
    return
  os.makedirs(eval_dir, exist_ok=True)
  record = {'global_step': int(step), 'checkpoint_path': checkpoint_path,
            'metrics': {k: _jsonable(v) for k, v in results.items()}}
  with open(os.path.join(eval_dir, EVAL_RESULTS_FILE), 'a') as f:
    f.write(json.dumps(record) + '\n')


def read_eval_results(eval_dir: str) -> dict[int, dict[str, object]]:
  """`{global_step: metrics}` of every evaluation recorded in `eval_dir` (latest wins)."""
  path = os.path.join(eval_dir, EVAL_RESULTS_FILE)
  out: dict[int, dict[str, object]] = {}
  if not os.path.exists(path):
    return out
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
          continue
        out[int(record['global_step'])] = record['metrics']
  return out


def _jsonable(v):
  arr = np.asarray(v)
  if arr.ndim == 0:
    return arr.item()
  return arr.tolist()
