"""A tuning worker process: `python _tune_worker.py BASE_DIR N_TRIALS MAX_STEPS EVERY_N`.

Runs `jestimator.tuning.tune` on the tiny problem of `_tune_models` in BASE_DIR's SQLite study
(heartbeat every second, stale after 3 s), so tests can run several at once or kill one.
"""
import sys

import optuna

import _tune_models as tm
from jestimator import tuning

if __name__ == '__main__':
  base_dir, n_trials, max_steps, every_n = sys.argv[1], *map(int, sys.argv[2:5])
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  tuning.tune(tm.make_build(max_steps=max_steps, every_n_steps=every_n), base_dir, 'loss',
              'minimize', n_trials, pruner=optuna.pruners.NopPruner(), heartbeat_interval=1,
              grace_period=3)
