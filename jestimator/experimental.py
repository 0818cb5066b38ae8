"""TF's `tf.estimator.experimental` names: the early-stopping hooks (re-exported from
`jestimator`), and clear errors for what jestimator does another way."""
from __future__ import annotations

from typing import Any

from jestimator.driver.early_stopping import (make_early_stopping_hook, stop_if_higher_hook,
                                              stop_if_lower_hook, stop_if_no_decrease_hook,
                                              stop_if_no_increase_hook)


class InMemoryEvaluatorHook:
  """Not available: raises a `TypeError` that says what to use."""

  def __init__(self, *args: Any, **kwargs: Any):
    raise TypeError(
        'InMemoryEvaluatorHook is not available in jestimator: evaluation during training runs on '
        'checkpoints, never on half-updated state. Use jestimator.train_and_evaluate(estimator, '
        'TrainSpec(...), EvalSpec(input_fn, steps=..., throttle_secs=...)), which evaluates each '
        'new checkpoint (set RunConfig(save_checkpoints_steps=N) for TF\'s every_n_iter=N)')


class RNNClassifier:
  """Not available: raises a `TypeError` that says what to use."""

  def __init__(self, *args: Any, **kwargs: Any):
    raise TypeError(
        'RNNClassifier is not available in jestimator: write a model_fn with a Flax recurrent '
        'layer (flax.linen.RNN) over jestimator.columns.SequenceFeatures and use a head from '
        'jestimator.heads (e.g. MultiClassHead) to build the EstimatorSpec')


__all__ = ['InMemoryEvaluatorHook', 'RNNClassifier', 'make_early_stopping_hook',
           'stop_if_higher_hook', 'stop_if_lower_hook', 'stop_if_no_decrease_hook',
           'stop_if_no_increase_hook']
