"""Trains a model of `_models` in a fresh process (for the resume / kill -9 tests).

Usage: python _train_script.py '{"model_dir": ..., "model": "mlp", "max_steps": 12, ...}'
Prints one JSON line `{"global_step": n}` when done.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _models  # noqa: E402
from jestimator import hooks, inputs  # noqa: E402
from jestimator.estimator import Estimator  # noqa: E402
from jestimator.run_config import RunConfig  # noqa: E402


class _Sleep(hooks.Hook):
  """Slows each step down so a parent can kill the process mid-run."""

  def __init__(self, secs):
    self.secs = secs

  def after_step(self, ctx, values):
    time.sleep(self.secs)


def build(args: dict) -> tuple[Estimator, object]:
  """The estimator and training input_fn both the script and the tests use."""
  config = RunConfig(seed=args.get('seed', 3), steps_per_loop=args.get('steps_per_loop', 1),
                     save_checkpoints_steps=args.get('save_checkpoints_steps', 1000),
                     keep_checkpoint_max=args.get('keep_checkpoint_max', 5))
  if args.get('model', 'mlp') == 'mlp':
    est = Estimator(_models.mlp_model_fn(), args['model_dir'], config=config, params={'lr': 0.05})
  else:
    est = Estimator(_models.linear_model_fn(), args['model_dir'], config=config)
  x, y = _models.make_data(100)
  # seed=None: the shuffle order follows RunConfig.seed, and its position is checkpointed.
  input_fn = inputs.numpy_input_fn({'x': x}, y, batch_size=16, num_epochs=None, shuffle=True)
  return est, input_fn


def main() -> None:
  args = json.loads(sys.argv[1])
  est, input_fn = build(args)
  extra = [_Sleep(args['sleep'])] if args.get('sleep') else []
  est.train(input_fn, max_steps=args['max_steps'], hooks=extra)
  print(json.dumps({'global_step': int(est.get_variable_value('global_step'))}), flush=True)


if __name__ == '__main__':
  main()
