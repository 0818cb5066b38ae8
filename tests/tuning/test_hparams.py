"""TensorBoard HParams: the study's config in base_dir and one session per trial, read back with
TensorBoard's own event reader and plugin protos (what the HParams dashboard reads)."""
from __future__ import annotations

import glob
import os

import optuna
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

import _tune_models as tm
from jestimator import tuning

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _plugin_data(run_dir):
  """`{tag: HParamsPluginData}` of the hparams plugin records in one run folder."""
  acc = EventAccumulator(run_dir, size_guidance={'tensors': 0})
  acc.Reload()
  out = {}
  for tag, content in acc.PluginTagToContent('hparams').items():
    data = plugin_data_pb2.HParamsPluginData()
    data.ParseFromString(content)
    out[tag] = data
  return out


def test_config_and_one_session_per_trial(tmp_path):
  base = str(tmp_path)
  study = tuning.tune(tm.make_build(max_steps=10, every_n_steps=5), base, 'loss', 'minimize', 3,
                      sampler=optuna.samplers.RandomSampler(seed=1))
  config = _plugin_data(base)['_hparams_/experiment'].experiment
  (info,) = config.hparam_infos
  assert info.name == 'lr' and info.type == api_pb2.DATA_TYPE_FLOAT64
  assert (info.domain_interval.min_value, info.domain_interval.max_value) == (0.01, 1.0)
  assert [(m.name.group, m.name.tag) for m in config.metric_infos] == [('eval', 'loss')]
  for t in study.trials:
    run = os.path.join(base, f'trial_{t.number}')
    data = _plugin_data(run)
    start = data['_hparams_/session_start_info'].session_start_info
    assert dict(start.hparams)['lr'].number_value == t.params['lr']
    assert data['_hparams_/session_end_info'].session_end_info.status == api_pb2.STATUS_SUCCESS
    # The metric the config names is a scalar of the session's `eval` run, with the trial's value.
    acc = EventAccumulator(os.path.join(run, 'eval'))
    acc.Reload()
    loss = [e for e in acc.Scalars('loss')] if 'loss' in acc.Tags()['scalars'] else [
        e for e in acc.Tensors('loss')]
    last = loss[-1]
    value = last.value if hasattr(last, 'value') else float(last.tensor_proto.float_val[0])
    assert last.step == 10 and value == pytest.approx(t.value, rel=1e-6)
  assert len(glob.glob(os.path.join(base, '*tfevents*'))) == 1  # one config, rewritten


def dashboard_session_groups(base_dir):
  """What the HParams tab shows: TensorBoard's own hparams plugin, served in process over
  `base_dir`, answering the dashboard's `experiment` and `session_groups` requests."""
  import json

  from tensorboard.backend.event_processing import data_provider
  from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
  from tensorboard.plugins import base_plugin
  from tensorboard.plugins.hparams import hparams_plugin
  from werkzeug.test import Client
  from werkzeug.wrappers import Response

  mux = pem.EventMultiplexer()
  mux.AddRunsFromDirectory(base_dir)
  mux.Reload()
  context = base_plugin.TBContext(logdir=base_dir, multiplexer=mux,
                                  data_provider=data_provider.MultiplexerDataProvider(mux,
                                                                                      base_dir))
  apps = hparams_plugin.HParamsPlugin(context).get_plugin_apps()

  def post(route, body):
    response = Client(apps[route], Response).post('/', data=json.dumps(body),
                                                  content_type='application/json')
    assert response.status_code == 200, response.get_data()
    return json.loads(response.get_data())

  experiment = post('/experiment', {'experimentName': ''})
  groups = post('/session_groups', {
      'experimentName': '', 'startIndex': 0, 'sliceSize': 100, 'colParams': [],
      'allowedStatuses': ['STATUS_UNKNOWN', 'STATUS_SUCCESS', 'STATUS_FAILURE',
                          'STATUS_RUNNING']})['sessionGroups']
  return experiment, {g['name']: g for g in groups}


def test_hparams_dashboard_lists_every_trial_with_params_and_metric(tmp_path):
  base = str(tmp_path)
  study = tuning.tune(tm.make_build(max_steps=20, every_n_steps=5, high=100.0), base, 'loss',
                      'minimize', 5, sampler=optuna.samplers.RandomSampler(seed=3),
                      pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
  experiment, groups = dashboard_session_groups(base)
  assert [h['name'] for h in experiment['hparamInfos']] == ['lr']
  assert experiment['metricInfos'][0]['name'] == {'group': 'eval', 'tag': 'loss'}
  assert sorted(groups) == sorted(f'trial_{t.number}' for t in study.trials)
  for t in study.trials:
    group = groups[f'trial_{t.number}']
    assert group['hparams']['lr'] == pytest.approx(t.params['lr'])
    (session,) = group['sessions']
    assert session['status'] == 'STATUS_SUCCESS'
    (metric,) = group['metricValues']
    # The metric is the trial's last evaluation: its value for a complete trial; a pruned trial
    # stopped one step after the evaluation that pruned it, and train_and_evaluate evaluated
    # that end (unreported to Optuna, which keeps the value that pruned it).
    last = max(t.intermediate_values)
    if t.state.name == 'COMPLETE':
      assert metric['trainingStep'] == 20 and metric['value'] == pytest.approx(t.value)
    else:
      assert metric['trainingStep'] in (last, last + 1)
