"""`add_metrics`: TF's `tf.estimator.add_metrics`, extra evaluation metrics on any Estimator."""
from __future__ import annotations

import dataclasses
from typing import Callable

from jestimator.driver.estimator import Estimator
from jestimator.model import fn_args
from jestimator.model.mode_keys import ModeKeys

_MODEL_FN_ARGS = ('features', 'labels', 'mode', 'params', 'config')


def add_metrics(estimator: Estimator, metric_fn: Callable[..., dict]) -> Estimator:
  """A new Estimator (same model_dir, config, params, feature columns) whose EVAL spec also has
  the metrics `metric_fn` returns, as TF's `add_metrics`.

  `metric_fn` takes any of `features`, `labels`, `predictions`, `config` (by name, as TF) and
  returns `{name: metric state}` built with `jestimator.metrics` (TF: `tf.compat.v1.metrics` /
  Keras metrics). A name the model already reports is replaced by the new metric (as TF).

  Example:
    def my_auc(labels, predictions):
      return {'auc_pr': jestimator.metrics.auc(labels, predictions['logistic'], curve='PR')}
    est = jestimator.add_metrics(est, my_auc)
  """
  if not isinstance(estimator, Estimator):
    raise TypeError(f'add_metrics: estimator must be a jestimator.Estimator, got '
                    f'{type(estimator).__name__}')
  if not callable(metric_fn):
    raise TypeError(f'add_metrics: metric_fn must be callable, got {type(metric_fn).__name__}')
  names, var_kw = fn_args.arg_names(metric_fn)
  allowed = {'features', 'labels', 'predictions', 'config'}
  if not var_kw and not names <= allowed:
    raise ValueError(f'add_metrics: metric_fn may take only {sorted(allowed)}, got '
                     f'{sorted(names)}')
  model_fn = estimator.model_fn
  config = estimator.config

  def new_model_fn(features, labels, mode, params, config):
    available = dict(zip(_MODEL_FN_ARGS, (features, labels, mode, params, config)))
    spec = fn_args.call_with_named_args(model_fn, 'model_fn', available)
    if mode != ModeKeys.EVAL:
      return spec
    extra = fn_args.call_with_named_args(
        metric_fn, 'metric_fn', {'features': features, 'labels': labels,
                                 'predictions': spec.predictions, 'config': config})
    if not isinstance(extra, dict):
      raise TypeError(f'add_metrics: metric_fn must return a dict {{name: metric state}}, got '
                      f'{type(extra).__name__}')
    return dataclasses.replace(spec, eval_metrics={**(spec.eval_metrics or {}), **extra})

  return Estimator(new_model_fn, model_dir=estimator.model_dir, config=config,
                   params=estimator.params, feature_columns=estimator.feature_columns,
                   label_transform=estimator.input_pipeline.preprocessor.label_transform)


__all__ = ['add_metrics']
