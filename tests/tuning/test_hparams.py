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
