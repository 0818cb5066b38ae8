"""Hyperparameter tuning over any Estimator, built on Optuna (`pip install 'jestimator[tune]'`).

A downstream user of the core like `distributed/`: it only calls `train_and_evaluate` and reads
evaluation results through the public `Hook` / exporter seams. See docs/tuning.md.

- `make_objective(build, base_dir, metric, direction)`: an Optuna objective; each trial trains in
  `base_dir/trial_<number>`, records `trial.json`, reports every evaluation and is pruned.
- `tune(...)`: the study in one call, in a resumable SQLite file shared by parallel workers.
- `best_estimator(study, build, base_dir)` / `best_model_dir(study, base_dir)`.
- `Population(build, members)`: members differing only in `optax.inject_hyperparams`
  hyperparameters and seeds, trained as one vmapped program (see `population`);
  `tune_population(...)`: such a population as Optuna trials (ask-and-tell, pruned by masking).
"""
from jestimator.tuning.objective import (TRIAL_FILE, PruningCallback, make_objective,
                                         read_trial_file, trial_dir)
from jestimator.tuning.population import MemberResult, Population
from jestimator.tuning.population_study import tune_population
from jestimator.tuning.study import (STORAGE_FILE, best_estimator, best_model_dir,
                                     default_storage, make_storage, tune)

__all__ = ['PruningCallback', 'make_objective', 'read_trial_file', 'trial_dir', 'TRIAL_FILE',
           'tune', 'best_estimator', 'best_model_dir', 'default_storage', 'make_storage',
           'STORAGE_FILE', 'Population', 'MemberResult',
           'tune_population']
