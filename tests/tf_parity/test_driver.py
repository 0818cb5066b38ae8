"""TF parity of the Estimator driver (issue 22): params, early stopping, RunConfig validation,
the checkpoint when training starts, error types.

Expected values are TF 2.15's, recorded by `tf_scripts/driver_semantics.py` in
`data/driver_semantics.json` (the early-stopping histories are those of TF's
`early_stopping_test.py` and of the issue). Each test states what TF does.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import _models
import jestimator as je
from jestimator import early_stopping, summaries
from jestimator.hooks import CheckpointSaverListener
from jestimator.state.checkpoints import Checkpointer

with open(os.path.join(os.path.dirname(__file__), 'data', 'driver_semantics.json')) as _f:
  TF = json.load(_f)

_ERRORS = {'ValueError': ValueError, 'TypeError': TypeError}


@pytest.fixture(scope='module')
def data():
  return _models.make_data(64)


def _repeat(x, y, batch_size=8):
  return je.inputs.numpy_input_fn({'x': x}, y, batch_size=batch_size, num_epochs=None,
                                  shuffle=False)


def _once(x, y, batch_size=32):
  return je.inputs.numpy_input_fn({'x': x}, y, batch_size=batch_size, shuffle=False)


def _steps(model_dir):
  return Checkpointer(model_dir, read_only=True).all_steps()


# -- 1. params: a fresh deep copy per model_fn call ------------------------------------------------

def test_model_fn_gets_a_fresh_copy_of_params_per_call(data, tmp_path):
  """TF: a model_fn that appends to `params['l']` sees [] in train, eval and predict, and
  `est.params` stays {'l': []} (TF passes `copy.deepcopy(params)` on every call)."""
  x, y = data
  seen = []
  linear = _models.linear_model_fn()

  def model_fn(features, labels, mode, params):
    seen.append(list(params['l']))
    params['l'].append(1)
    return linear(features, labels, mode)

  params = {'l': []}
  est = je.Estimator(model_fn, str(tmp_path / 'm'), params=params)
  est.train(_repeat(x, y), steps=1)
  est.evaluate(_once(x, y), steps=1)
  next(iter(est.predict(je.inputs.numpy_input_fn({'x': x}, batch_size=8, shuffle=False))))
  # TF traces each mode once; jestimator may trace a mode more than once (init, abstract trace,
  # jit): every one of those calls must see the untouched params too.
  assert {len(s) for s in seen} == {0}, seen
  assert len(TF['params']['seen']) == 3 and all(s == [] for s in TF['params']['seen'])
  assert est.params == TF['params']['est_params'] == {'l': []}
  assert params == {'l': []}  # the caller's object was copied at construction, as TF


def test_input_fn_gets_a_fresh_copy_of_params_per_call(data, tmp_path):
  """TF's `_call_input_fn` passes `self.params`, a deep copy: mutations do not leak."""
  x, y = data
  seen = []

  def input_fn(params):
    seen.append(list(params['l']))
    params['l'].append(1)
    return {'x': x[:8]}, y[:8]

  # A model_fn without `params` is an error when params are given: take them.
  est = je.Estimator(lambda features, labels, mode, params: _models.linear_model_fn()(
      features, labels, mode), str(tmp_path / 'm'), params={'l': []})
  est.train(input_fn, steps=1)
  est.evaluate(input_fn, steps=1)
  assert seen == [[], []]
  assert est.params == {'l': []}


# -- 2-4. early stopping over the whole evaluation history -----------------------------------------

_HOOKS = {  # TF's early_stopping_test.py / the histories; `TF['early_stopping']` holds
            # what TF 2.15's hooks decided on them (written as eval event files).
    'higher_any_eval': ('stop_if_higher_hook', 'accuracy',
                        [(1000, 0.5), (2000, 0.6), (3000, 0.7), (4000, 0.68)],
                        dict(threshold=0.69)),
    'higher_not_reached': ('stop_if_higher_hook', 'accuracy',
                           [(1000, 0.5), (2000, 0.6), (3000, 0.68)], dict(threshold=0.69)),
    'higher_before_min_steps': ('stop_if_higher_hook', 'accuracy',
                                [(1000, 0.8), (2000, 0.6), (3000, 0.68)],
                                dict(threshold=0.69, min_steps=2000)),
    'lower_any_eval': ('stop_if_lower_hook', 'loss',
                       [(1000, 0.7), (2000, 0.6), (3000, 0.3), (4000, 0.4)],
                       dict(threshold=0.35)),
    'lower_before_min_steps': ('stop_if_lower_hook', 'loss',
                               [(1000, 0.1), (2000, 0.6), (3000, 0.5)],
                               dict(threshold=0.35, min_steps=2000)),
    'no_decrease_ignores_before_min_steps': (
        'stop_if_no_decrease_hook', 'loss',
        [(1000, 0.3), (2000, 0.7), (3000, 0.6), (3500, 0.5)],
        dict(max_steps_without_decrease=1000, min_steps=2000)),
    'no_decrease_window_in_history': (
        'stop_if_no_decrease_hook', 'loss',
        [(1000, 0.5), (2000, 0.6), (3000, 0.7), (3500, 0.4)],
        dict(max_steps_without_decrease=1500)),
    'no_decrease_not_yet': ('stop_if_no_decrease_hook', 'loss',
                            [(1000, 0.5), (2000, 0.6), (2400, 0.7), (3000, 0.4)],
                            dict(max_steps_without_decrease=1500)),
    'no_increase_ignores_before_min_steps': (
        'stop_if_no_increase_hook', 'accuracy',
        [(1000, 0.9), (2000, 0.5), (3000, 0.6), (3500, 0.7)],
        dict(max_steps_without_increase=1000, min_steps=2000)),
    'no_increase_window_in_history': (
        'stop_if_no_increase_hook', 'accuracy',
        [(1000, 0.7), (2000, 0.6), (3000, 0.5), (3500, 0.8)],
        dict(max_steps_without_increase=1500)),
}


@pytest.fixture(scope='module')
def bare_est(tmp_path_factory):
  return je.Estimator(_models.linear_model_fn(), str(tmp_path_factory.mktemp('es') / 'm'))


@pytest.mark.parametrize('case', sorted(_HOOKS))
def test_early_stopping_decides_as_tf_on_the_whole_history(bare_est, tmp_path, case):
  """TF (`_stop_if_threshold_crossed_hook`, `_stop_if_no_metric_improvement_hook`): evaluations
  at steps < min_steps are skipped; a threshold hook stops if ANY later evaluation crossed the
  threshold (e.g. accuracy 0.5, 0.6, 0.7, 0.68 with threshold 0.69 stops); a no-improvement
  hook stops if at ANY evaluation the steps since the best so far reached the limit (loss 0.5,
  0.6, 0.7@3000, 0.4@3500 with limit 1500 stops: 2000 steps without a decrease at step 3000)."""
  hook_name, metric, history, kwargs = _HOOKS[case]
  eval_dir = str(tmp_path / 'eval')
  for step, value in history:
    summaries.append_eval_results(eval_dir, step, {metric: value}, None)
  hook = getattr(early_stopping, hook_name)(bare_est, metric, eval_dir=eval_dir,
                                            run_every_secs=None, run_every_steps=1, **kwargs)
  assert hook.should_stop_fn() is TF['early_stopping'][case], case


def test_early_stopping_checks_at_the_step_cadence_and_stops_training(data, tmp_path):
  """End to end, the issue's case 4 read after a restart: loss 0.5@1000, 0.6, 0.7@3000,
  0.4@3500, limit 1500 -> TF stops at its first check."""
  x, y = data
  est = je.Estimator(_models.linear_model_fn(), str(tmp_path / 'm'))
  for step, value in _HOOKS['no_decrease_window_in_history'][2]:
    summaries.append_eval_results(est.eval_dir(), step, {'loss': value}, None)
  hook = je.stop_if_no_decrease_hook(est, 'loss', 1500, run_every_steps=2)
  est.train(_repeat(x, y), steps=6, hooks=[hook])
  assert est.get_variable_value('global_step') == 2


# -- 5, 6, 8, 9 and the rest of RunConfig's validation ---------------------------------------------

_RUN_CONFIG = {  # the cases of `TF['run_config']` in jestimator's spelling
    'save_checkpoints_secs=-1': dict(save_checkpoints_secs=-1),
    'save_checkpoints_steps=-1': dict(save_checkpoints_steps=-1),
    'save_checkpoints_steps=0': dict(save_checkpoints_steps=0),
    'save_checkpoints_secs=0': dict(save_checkpoints_secs=0),
    'tf_random_seed=1.5': dict(tf_random_seed=1.5),
    "tf_random_seed='1'": dict(tf_random_seed='1'),
    'tf_random_seed=7': dict(tf_random_seed=7),
    'keep_checkpoint_max=-1': dict(keep_checkpoint_max=-1),
    'keep_checkpoint_max=0': dict(keep_checkpoint_max=0),
    'keep_checkpoint_max=None': dict(keep_checkpoint_max=None),
    'save_summary_steps=0': dict(save_summary_steps=0),
    'save_summary_steps=None': dict(save_summary_steps=None),
    'save_summary_steps=-1': dict(save_summary_steps=-1),
    'log_step_count_steps=0': dict(log_step_count_steps=0),
    'model_dir=""': dict(model_dir=''),
    'both checkpoint cadences': dict(save_checkpoints_steps=1, save_checkpoints_secs=1),
}
# TF's messages that jestimator's carry word for word (the others name the argument).
_SAME_MESSAGE = {'save_checkpoints_secs=-1', 'save_checkpoints_steps=-1', 'tf_random_seed=1.5',
                 "tf_random_seed='1'", 'keep_checkpoint_max=-1', 'save_summary_steps=-1',
                 'model_dir=""', 'log_step_count_steps=0'}


@pytest.mark.parametrize('case', sorted(_RUN_CONFIG))
def test_run_config_validates_as_tf(case):
  """TF's `_validate_properties`: what it rejects, jestimator rejects with an exception TF's
  `except` catches (ValueError throughout) and the message naming the argument; what it
  accepts, jestimator accepts (never truncating, e.g. a seed of 1.5)."""
  kwargs = _RUN_CONFIG[case]
  expected = TF['run_config'][case]
  if expected is None:
    je.RunConfig(**kwargs)
    return
  tf_type, tf_message = expected
  with pytest.raises(_ERRORS[tf_type]) as info:
    je.RunConfig(**kwargs)
  name = next(iter(kwargs)) if len(kwargs) == 1 else 'save_checkpoints_secs'
  assert name in str(info.value)
  if case in _SAME_MESSAGE:
    assert tf_message in str(info.value)


def test_seed_must_be_an_integer_not_truncated():
  """TF: `RunConfig(tf_random_seed=1.5)` -> ValueError('tf_random_seed must be integer.').
  jestimator's error is also a TypeError (the natural class)."""
  for seed in (1.5, np.float32(2.0), '3', True):
    with pytest.raises(ValueError, match='tf_random_seed must be integer'):
      je.RunConfig(seed=seed)
    with pytest.raises(TypeError, match='tf_random_seed must be integer'):
      je.RunConfig(tf_random_seed=seed)
  assert type(je.RunConfig(seed=np.int64(5)).seed) is int  # numpy integers are integers


def test_tf_random_seed_is_tfs_name_for_seed(data, tmp_path):
  """TF's `RunConfig(tf_random_seed=...)` ports unchanged: it is `seed`; both with different
  values is an error; `replace` of either changes both."""
  config = je.RunConfig(tf_random_seed=7)
  assert config.seed == config.tf_random_seed == config.random_seed == 7
  assert je.RunConfig(seed=7) == config == je.RunConfig(seed=7, tf_random_seed=7)
  with pytest.raises(ValueError, match='seed=1 and tf_random_seed=2'):
    je.RunConfig(seed=1, tf_random_seed=2)
  assert config.replace(seed=3).tf_random_seed == 3
  assert config.replace(tf_random_seed=4).seed == 4
  assert config.replace(tf_random_seed=None).seed is None
  # The same initial weights as the same seed given as `seed`.
  x, y = data
  values = []
  for i, cfg in enumerate((je.RunConfig(tf_random_seed=11), je.RunConfig(seed=11))):
    est = je.Estimator(_models.linear_model_fn(lr=0.0), str(tmp_path / str(i)), config=cfg)
    est.train(_repeat(x, y), steps=1)
    values.append(est.get_variable_value(est.get_variable_names()[0]))
  np.testing.assert_array_equal(values[0], values[1])


def test_negative_save_checkpoints_secs_is_rejected_before_training(tmp_path):
  """TF: ValueError('save_checkpoints_secs should be >= 0'); jestimator used to accept -1 and
  checkpoint every step."""
  with pytest.raises(ValueError, match='save_checkpoints_secs should be >= 0'):
    je.RunConfig(save_checkpoints_secs=-1)
  with pytest.raises(ValueError, match='save_checkpoints_secs should be >= 0'):
    je.RunConfig().replace(save_checkpoints_secs=-1)


def test_negative_keep_checkpoint_max_names_the_argument():
  """TF: ValueError('keep_checkpoint_max should be >= 0') from RunConfig, not from the saver."""
  with pytest.raises(ValueError, match='keep_checkpoint_max should be >= 0'):
    je.RunConfig(keep_checkpoint_max=-1)


@pytest.mark.parametrize('every', [0, None])
def test_save_summary_steps_zero_or_none_turns_training_summaries_off(data, tmp_path, every):
  """TF: `save_summary_steps=0` (or None) is valid and adds no SummarySaverHook: the training
  event file holds `global_step/sec` only (StepCounterHook), no `loss`; with 2, both."""
  x, y = data
  tags = {}
  for name, steps in ((str(every), every), ('2', 2)):
    model_dir = str(tmp_path / name)
    config = je.RunConfig(save_summary_steps=steps, log_step_count_steps=2)
    je.Estimator(_models.linear_model_fn(), model_dir, config=config).train(_repeat(x, y),
                                                                           steps=5)
    acc = EventAccumulator(model_dir)
    acc.Reload()
    tags[name] = sorted(acc.Tags()['scalars'])
  assert tags[str(every)] == TF['summary_tags_by_save_summary_steps'][str(every)]
  assert tags['2'] == TF['summary_tags_by_save_summary_steps']['2']


@pytest.mark.parametrize('case', ['save_checkpoints_steps=0', 'save_checkpoints_secs=0'])
def test_zero_checkpoint_cadence_turns_periodic_checkpoints_off(data, tmp_path, case):
  """TF: a cadence of 0 is valid and means no CheckpointSaverHook (TF then writes no checkpoint
  at all). jestimator: no periodic or start checkpoint either (it used to save every step for
  secs=0), but, as documented, still the one at the end of `train`."""
  x, y = data
  model_dir = str(tmp_path / 'm')
  est = je.Estimator(_models.linear_model_fn(), model_dir, config=je.RunConfig(**_RUN_CONFIG[case]))
  est.train(_repeat(x, y), steps=5)
  assert TF['run_config'][case + ' ckpts'] == []
  assert _steps(model_dir) == [5]  # documented difference: the end of train always saves


# -- 7. the checkpoint when training starts ------------------------------------------------------

class _Listener(CheckpointSaverListener):

  def __init__(self):
    self.events = []

  def before_save(self, step):
    self.events.append(['before_save', step])

  def after_save(self, step):
    self.events.append(['after_save', step])


def test_train_saves_a_checkpoint_when_it_starts(data, tmp_path):
  """TF: `train(steps=5)` with the default config leaves checkpoints 0 and 5."""
  x, y = data
  model_dir = str(tmp_path / 'm')
  est = je.Estimator(_models.linear_model_fn(), model_dir)
  est.train(_repeat(x, y), steps=5)
  assert _steps(model_dir) == TF['checkpoints']['train_steps_5_default_config'] == [0, 5]
  # The step-0 checkpoint holds the initial weights: a fresh run can roll back to them.
  fresh = je.Estimator(_models.linear_model_fn(), str(tmp_path / 'fresh'))
  fresh_pred = next(iter(fresh.predict(je.inputs.numpy_input_fn({'x': x[:4]}, shuffle=False),
                                       yield_single_examples=False)))
  start = next(iter(est.predict(je.inputs.numpy_input_fn({'x': x[:4]}, shuffle=False),
                                checkpoint_path=os.path.join(model_dir, '0'),
                                yield_single_examples=False)))
  for key in fresh_pred:
    np.testing.assert_array_equal(start[key], fresh_pred[key])


def test_listeners_hear_the_start_save_and_resume(data, tmp_path):
  """TF: save_checkpoints_steps=3, train(steps=7) -> after_save at 0, 3, 6, 7; a second
  train(steps=2) -> after_save(7) (the step it resumes from) then (9); checkpoints 0 3 6 7 9."""
  x, y = data
  model_dir = str(tmp_path / 'm')
  est = je.Estimator(_models.linear_model_fn(), model_dir,
                     config=je.RunConfig(save_checkpoints_steps=3))
  first = _Listener()
  est.train(_repeat(x, y), steps=7, saving_listeners=[first])
  assert first.events == TF['checkpoints']['steps_3_train_7_events']
  assert _steps(model_dir) == TF['checkpoints']['steps_3_train_7_ckpts']
  again = _Listener()
  est.train(_repeat(x, y), steps=2, saving_listeners=[again])
  assert again.events == TF['checkpoints']['steps_3_resume_2_events']
  assert _steps(model_dir) == TF['checkpoints']['steps_3_resume_2_ckpts']


def test_train_and_evaluate_does_not_evaluate_the_start_save(data, tmp_path):
  """TF's `_NewCheckpointListenerForEvaluate` skips its first `after_save` (nothing trained):
  also on resume, where the first save announced is the resumed step's."""
  x, y = data
  est = je.Estimator(_models.linear_model_fn(), str(tmp_path / 'm'),
                     config=je.RunConfig(save_checkpoints_steps=3))
  spec = je.EvalSpec(_once(x, y), steps=None, throttle_secs=0)
  je.train_and_evaluate(est, je.TrainSpec(_repeat(x, y), max_steps=7), spec)
  je.train_and_evaluate(est, je.TrainSpec(_repeat(x, y), max_steps=9), spec)
  assert sorted(summaries.read_eval_results(est.eval_dir())) == [3, 6, 7, 9]


# -- 10. error types a ported `except` / `assertRaises` catches ------------------------------------

def _tf_error(case):
  return _ERRORS[TF['error_types'][case][0]]


def test_model_fn_returning_a_non_spec(data, tmp_path):
  """TF: ValueError('model_fn should return an EstimatorSpec.'); jestimator's is both
  ValueError and TypeError."""
  x, y = data
  est = je.Estimator(lambda features, labels, mode: {'loss': 0.0}, str(tmp_path / 'm'))
  for cls in (_tf_error('model_fn returns a dict'), TypeError):
    with pytest.raises(cls, match='must return an EstimatorSpec'):
      est.train(_repeat(x, y), steps=1)


def test_eval_spec_name_and_exporter_name_types(data):
  """TF: EvalSpec(name=123) -> TypeError; an exporter whose name is None -> ValueError.
  jestimator raises one class that is both, for both."""
  x, y = data

  class NoneName:
    name = None

    def export(self, *args):
      return None

  for cls in (_tf_error('EvalSpec(name=123)'), ValueError):
    with pytest.raises(cls, match='name'):
      je.EvalSpec(_once(x, y), name=123)
  for cls in (_tf_error('EvalSpec(exporters=exporter named None)'), TypeError):
    with pytest.raises(cls, match='None'):
      je.EvalSpec(_once(x, y), exporters=[NoneName()])


def test_make_early_stopping_hook_checks_its_arguments(bare_est):
  """TF: a non-Estimator -> TypeError; both run_every_secs and run_every_steps -> ValueError
  (jestimator used to ignore the first and silently check by steps)."""
  with pytest.raises(_tf_error('make_early_stopping_hook(object())'), match='estimator'):
    je.make_early_stopping_hook(object(), lambda: False)
  with pytest.raises(_tf_error('make_early_stopping_hook(both cadences)'),
                     match='Only one of `run_every_secs` and `run_every_steps`'):
    je.make_early_stopping_hook(bare_est, lambda: False, run_every_secs=60, run_every_steps=10)
  with pytest.raises(ValueError, match='Only one of'):
    je.stop_if_no_decrease_hook(bare_est, 'loss', 10, run_every_secs=60, run_every_steps=10)
  with pytest.raises(TypeError, match='estimator'):
    je.stop_if_higher_hook(object(), 'loss', 1.0)
  # `run_every_steps=N` alone means every N steps (TF's default 60 s would make it an error).
  assert je.make_early_stopping_hook(bare_est, lambda: False, run_every_steps=10).run_every_secs \
      is None
