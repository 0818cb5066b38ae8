"""`train_and_evaluate`: evaluation points, compiled-step reuse, exporters, early stopping, specs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from jax.experimental import multihost_utils

import _models
import jestimator as je
from jestimator import inputs
from jestimator.driver import agreement
from jestimator.checkpoints import Checkpointer
from jestimator.distributed import EvalSpec, TrainSpec, train_and_evaluate
from jestimator.export import FinalExporter, LatestExporter, build_raw_serving_input_fn
from jestimator.hooks import Hook
from jestimator.mode_keys import ModeKeys
from jestimator.summaries import EVAL_RESULTS_FILE

X, Y = _models.make_data(64, seed=1)
SERVING = build_raw_serving_input_fn({'x': ('float32', [_models.N_FEATURES])})


def _train_input():
  return inputs.numpy_input_fn({'x': X}, Y, batch_size=8, num_epochs=None, shuffle=True, seed=0)


def _eval_input():
  return inputs.numpy_input_fn({'x': X}, Y, batch_size=16, shuffle=False)


def _estimator(model_dir, calls=None, lr=0.1, **config):
  config = je.RunConfig(seed=0, keep_checkpoint_max=None, log_step_count_steps=1000, **config)
  return je.Estimator(_models.linear_model_fn(calls, lr=lr), model_dir, config=config)


def _eval_records(est, name=None):
  with open(os.path.join(est.eval_dir(name), EVAL_RESULTS_FILE)) as f:
    return [json.loads(line) for line in f if line.strip()]


def _numpy_loss(model_dir, step):
  """Mean logistic loss over (X, Y) at checkpoint `step`, computed in numpy."""
  v = Checkpointer(model_dir, read_only=True).restore_raw_variables(step)
  return float(np.mean(_models.numpy_logistic_loss(X, Y, v['params/Dense_0/kernel'],
                                                   v['params/Dense_0/bias'])))


class _TraceCount(Hook):
  """Records how often the model_fn was traced in EVAL mode, at the end of each evaluation."""

  def __init__(self, calls):
    self.calls, self.seen = calls, []

  def end(self, state):
    self.seen.append(self.calls.count(ModeKeys.EVAL))


def test_evaluates_after_each_save_as_tf(model_dir):
  # TF 2.15: save_checkpoints_steps=3, max_steps=10, throttle_secs=0 -> evaluations at 3, 6, 9, 10.
  calls = _models.Calls()
  est = _estimator(model_dir, calls, save_checkpoints_steps=3)
  traces = _TraceCount(calls)
  metrics, exports = train_and_evaluate(
      est, TrainSpec(_train_input(), max_steps=10),
      EvalSpec(_eval_input(), steps=None, throttle_secs=0, hooks=[traces]))
  records = _eval_records(est)
  assert [r['global_step'] for r in records] == [3, 6, 9, 10]
  # Each evaluation saw the parameters of its own step (the in-memory state at that save).
  for r in records:
    assert r['metrics']['loss'] == pytest.approx(_numpy_loss(model_dir, r['global_step']),
                                                 rel=1e-5)
    assert r['checkpoint_path'] == os.path.join(os.path.abspath(model_dir),
                                                str(r['global_step']))
  assert metrics['global_step'] == 10 and exports == []
  assert metrics['loss'] == pytest.approx(_numpy_loss(model_dir, 10), rel=1e-5)
  # The eval step was traced for the first evaluation only, then reused.
  assert len(traces.seen) == 4 and traces.seen[0] > 0
  assert traces.seen == [traces.seen[0]] * 4

  # max_steps reached already: no training; the latest checkpoint is evaluated for the return value.
  again, exports = train_and_evaluate(est, TrainSpec(_train_input(), max_steps=10),
                                      EvalSpec(_eval_input(), steps=2, throttle_secs=0))
  assert again['global_step'] == 10 and exports == []
  assert Checkpointer(model_dir, read_only=True).all_steps() == [0, 3, 6, 9, 10]  # 0: at start


def test_throttle_skips_saves_but_not_the_end(model_dir):
  est = _estimator(model_dir, save_checkpoints_steps=3)
  metrics, _ = train_and_evaluate(est, TrainSpec(_train_input(), max_steps=10),
                                  EvalSpec(_eval_input(), steps=1, throttle_secs=3600))
  # The first save is evaluated (nothing to throttle against), 6 and 9 come too soon, and the end.
  assert [r['global_step'] for r in _eval_records(est)] == [3, 10]
  assert metrics['global_step'] == 10


def test_every_n_steps_ignores_checkpoint_cadence(model_dir):
  est = _estimator(model_dir, save_checkpoints_steps=2)
  train_and_evaluate(est, TrainSpec(_train_input(), max_steps=10),
                     EvalSpec(_eval_input(), steps=1, every_n_steps=3, name='n3'))
  assert [r['global_step'] for r in _eval_records(est, 'n3')] == [3, 6, 9, 10]
  # Evaluations forced saves at 3 and 9 (6 was a configured one too); the configured saves at
  # 2, 4, 8 happen, without evaluations.
  assert Checkpointer(model_dir, read_only=True).all_steps() == [0, 2, 3, 4, 6, 8, 9, 10]


def _export_steps(path):
  out = []
  for v in sorted(os.listdir(path)):
    if v.isdigit():
      with open(os.path.join(path, v, 'signature.json')) as f:
        out.append(json.load(f)['global_step'])
  return out


def test_exporters_latest_retention_and_final_only_at_end(model_dir, caplog):
  est = _estimator(model_dir, save_checkpoints_steps=3)
  latest = LatestExporter('latest', SERVING, exports_to_keep=2)
  final = FinalExporter('final', SERVING)
  with caplog.at_level('INFO', logger='jestimator'):
    _, exports = train_and_evaluate(est, TrainSpec(_train_input(), max_steps=10),
                                    EvalSpec(_eval_input(), steps=1, throttle_secs=0,
                                             exporters=[latest, final]))
  for path in exports:  # each export logged once (issue 24: twice)
    assert sum(path in r.getMessage() for r in caplog.records
               if r.getMessage().startswith('Exported')) == 1, path
  root = os.path.join(model_dir, 'export')
  assert len(exports) == 5  # latest at 3, 6, 9, 10; final at 10
  assert all(os.path.dirname(p) == os.path.join(root, 'latest') for p in exports[:3])
  assert _export_steps(os.path.join(root, 'latest')) == [9, 10]  # kept the newest 2
  assert _export_steps(os.path.join(root, 'final')) == [10]
  assert os.path.dirname(exports[-1]) == os.path.join(root, 'final')


def test_early_stopping_stops_train_and_evaluate(model_dir):
  # lr=0: the eval loss never decreases, so the hook stops once two steps passed without a decrease
  # in the evaluations recorded so far: at step 5 (it sees 2 and 4 then). TF's FinalExporter would
  # never export here (step < max_steps); ours gets the final export at the stop.
  est = _estimator(model_dir, lr=0.0, save_checkpoints_steps=2)
  hook = je.stop_if_no_decrease_hook(est, 'loss', max_steps_without_decrease=2, run_every_steps=1)
  final = FinalExporter('final', SERVING)
  metrics, exports = train_and_evaluate(
      est, TrainSpec(_train_input(), max_steps=100, hooks=[hook]),
      EvalSpec(_eval_input(), steps=1, throttle_secs=0, exporters=final))
  assert [r['global_step'] for r in _eval_records(est)] == [2, 4, 5]
  assert metrics['global_step'] == 5
  assert len(exports) == 1 and _export_steps(os.path.dirname(exports[0])) == [5]


def test_single_process_training_makes_no_cross_process_agreement(model_dir, monkeypatch):
  def fail(*a, **k):
    raise AssertionError('any_process called in a single-process run')
  # The collective any_process would run: a single process must never reach it.
  monkeypatch.setattr(multihost_utils, 'process_allgather', fail)
  est = _estimator(model_dir, save_checkpoints_steps=2)
  train_and_evaluate(est, TrainSpec(_train_input(), max_steps=4),
                     EvalSpec(_eval_input(), steps=1, throttle_secs=0))
  assert [r['global_step'] for r in _eval_records(est)] == [2, 4]


def test_any_process_ors_each_flag_over_processes():
  others = np.array([[0, 0, 1], [0, 1, 0]], np.int32)  # what processes 1 and 2 send
  gather = lambda local: np.concatenate([local[None], others])
  assert agreement.any_process(False, False, False, gather=gather) == (False, True, True)
  assert agreement.any_process(True, False, False, gather=gather) == (True, True, True)
  # Single process, the real collective: the flags come back as they went.
  assert agreement.any_process(True, False) == (True, False)


class _NotAnExporter:
  name = 'x'


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(steps=0), ValueError, 'EvalSpec.steps must be a positive integer'),
    (dict(steps=-3), ValueError, 'EvalSpec.steps'),
    (dict(throttle_secs=-1), ValueError, 'EvalSpec.throttle_secs must be a number >= 0'),
    (dict(start_delay_secs=-1), ValueError, 'EvalSpec.start_delay_secs'),
    (dict(every_n_steps=0), ValueError, 'EvalSpec.every_n_steps'),
    (dict(exporters=[_NotAnExporter()]), TypeError, 'Exporter instances .* _NotAnExporter'),
    (dict(exporters='latest'), TypeError, 'got str'),
    (dict(exporters=[LatestExporter('a'), FinalExporter('a')]), ValueError,
     "unique names; 'a' appears twice"),
    (dict(hooks=[object()]), TypeError, 'EvalSpec.hooks must be jestimator.hooks.Hook'),
    (dict(name='a/b'), ValueError, 'EvalSpec.name'),
])
def test_eval_spec_validation(kwargs, error, match):
  with pytest.raises(error, match=match):
    EvalSpec(_eval_input(), **kwargs)


def test_train_spec_and_argument_validation(model_dir):
  with pytest.raises(ValueError, match='TrainSpec.max_steps must be a positive integer'):
    TrainSpec(_train_input(), max_steps=0)
  with pytest.raises(TypeError, match='TrainSpec.input_fn must be callable'):
    TrainSpec([1, 2], max_steps=3)
  with pytest.raises(TypeError, match='TrainSpec.hooks'):
    TrainSpec(_train_input(), hooks=['stop'])
  with pytest.raises(TypeError, match='TrainSpec.saving_listeners'):
    TrainSpec(_train_input(), saving_listeners=[object()])
  spec = EvalSpec(_eval_input())
  assert (spec.steps, spec.throttle_secs, spec.start_delay_secs) == (100, 600, 120)  # TF defaults
  with pytest.raises(TypeError, match='estimator must be a jestimator.Estimator'):
    train_and_evaluate(object(), TrainSpec(_train_input()), spec)
  with pytest.raises(TypeError, match='eval_spec must be an EvalSpec'):
    train_and_evaluate(_estimator(model_dir), TrainSpec(_train_input()), {'steps': 1})
  assert je.train_and_evaluate is train_and_evaluate and je.EvalSpec is EvalSpec


def test_gather_ints_keeps_processes_in_order():
  gather = lambda local: np.stack([local, local * 10])  # two fake processes
  np.testing.assert_array_equal(agreement.gather_ints([1, 0, 3], gather=gather),
                                [[1, 0, 3], [10, 0, 30]])
