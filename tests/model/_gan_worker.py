"""Trains `_gan`'s toy GAN through the Estimator in a fresh process (resume, multi-device and
multi-process checks of test_train_ops_estimator.py).

  python _gan_worker.py '{"runs": [{"strategy": "single", "steps_per_loop": 1, "start": 0,
                          "max_steps": 23, "model_dir": ...}], "out": OUT_JSON}'

`strategy`: single | dp (DataParallel) | pmap. With JESTIMATOR_NUM_PROCESSES set the process
first joins the multi-process run (2 CPU devices each) and writes `OUT_JSON.<process index>`.
Each run writes the variables it ends with.
"""
from __future__ import annotations

import itertools
import json
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
MULTI = bool(os.environ.get('JESTIMATOR_NUM_PROCESSES'))
if MULTI:
  jax.config.update('jax_num_cpu_devices', 2)  # before the backend starts
  from jestimator import distributed as jd  # noqa: E402
  assert jd.initialize()

import _gan  # noqa: E402
import jestimator as je  # noqa: E402
from jestimator import distributed as jd  # noqa: E402,F811


def _input_from(start: int):
  """`_gan.input_fn` from global batch `start` on (a resumed run continues the data)."""
  def input_fn(input_context=None):
    return itertools.islice(_gan.input_fn(input_context), start, None)
  return input_fn


def main(args: dict) -> None:
  out = {}
  for i, run in enumerate(args['runs']):
    strategy = {'single': None, 'dp': jd.DataParallel, 'pmap': jd.Pmap}[run['strategy']]
    config = je.RunConfig(seed=1, steps_per_loop=run.get('steps_per_loop', 1),
                          strategy=strategy() if strategy else None)
    est = je.Estimator(_gan.model_fn, run['model_dir'], config=config)
    est.train(_input_from(run.get('start', 0)), max_steps=run['max_steps'])
    out[str(i)] = {k: v.tolist() for k, v in _gan.variables(est).items()}
  path = args['out'] + (f'.{jax.process_index()}' if MULTI else '')
  with open(path, 'w') as f:
    json.dump(out, f)


if __name__ == '__main__':
  main(json.loads(sys.argv[1]))
