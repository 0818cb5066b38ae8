"""A tiny tuning problem shared by the tuning tests and their worker processes.

Logistic regression (tests/_models.linear_model_fn) on 64 synthetic rows; the trial's learning rate
is the only hyperparameter. SGD with lr >= 50 overshoots to a far higher loss than lr ~ 0.3, so
"hopeless" trials are easy to tell apart.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _models  # noqa: E402
import jestimator as je  # noqa: E402
from jestimator import inputs  # noqa: E402

X, Y = _models.make_data(64, seed=1)


train_input = inputs.numpy_input_fn({'x': X}, Y, batch_size=8, num_epochs=None, shuffle=True,
                                    seed=0)
eval_input = inputs.numpy_input_fn({'x': X}, Y, batch_size=64, shuffle=False)


def estimator(model_dir: str, lr: float) -> je.Estimator:
  config = je.RunConfig(seed=0, keep_checkpoint_max=None, log_step_count_steps=10_000,
                        save_checkpoints_steps=None, save_checkpoints_secs=None)
  return je.Estimator(_models.linear_model_fn(lr=lr), model_dir, config=config)


def make_build(max_steps: int = 20, every_n_steps: int = 5, low: float = 0.01, high: float = 1.0):
  """`build(trial, model_dir)` suggesting `lr` in [low, high] (log scale)."""

  def build(trial, model_dir):
    lr = trial.suggest_float('lr', low, high, log=True)
    return (estimator(model_dir, lr), je.TrainSpec(train_input, max_steps=max_steps),
            je.EvalSpec(eval_input, steps=None, every_n_steps=every_n_steps))

  return build
