"""TensorBoard HParams records of a study: `tensorboard --logdir base_dir` lists the trials.

The HParams dashboard reads (as TensorFlow's `tensorboard.plugins.hparams.api` writes them):
- the experiment config, in the root run (`base_dir/`): every hyperparameter (with its domain when
  the search space gives one) and the metrics, named `(group, tag)` where group is the evaluation
  folder (`eval` or `eval_<name>`) and tag the metric: the dashboard reads each trial's value from
  the scalars of `trial_<n>/<group>`, which the Estimator's evaluations already write;
- one session per trial, in the trial's run (`base_dir/trial_<n>/`): its parameter values when it
  starts, and its status when it ends.
The records are written with tensorboardX's copies of TensorBoard's protos (no TensorFlow).
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Iterable, Mapping

from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

CONFIG_FILE = 'events.out.tfevents.0.hparams_config'  # fixed: rewritten as trials add params
_PLUGIN, _VERSION = 'hparams', 0
_EXPERIMENT_TAG = '_hparams_/experiment'
_START_TAG = '_hparams_/session_start_info'
_END_TAG = '_hparams_/session_end_info'
# An Optuna trial state -> the dashboard's session status (a pruned trial ended as asked).
STATUS = {'COMPLETE': 'STATUS_SUCCESS', 'PRUNED': 'STATUS_SUCCESS', 'FAIL': 'STATUS_FAILURE',
          'RUNNING': 'STATUS_RUNNING'}


def _summary(tag: str, **data) -> Any:
  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
  from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
  content = HParamsPluginData(version=_VERSION, **data).SerializeToString()
  meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=_PLUGIN,
                                                                content=content))
  return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def _write(directory: str, summaries: Iterable[Any], suffix: str) -> None:
  from tensorboardX.event_file_writer import EventsWriter
  from tensorboardX.proto import event_pb2
  os.makedirs(directory, exist_ok=True)
  writer = EventsWriter(os.path.join(directory, 'events'), filename_suffix=suffix)
  for summary in summaries:
    writer.write_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))
  writer.close()


def _hparam_info(name: str, dist: BaseDistribution | None, example: Any) -> Any:
  from google.protobuf import struct_pb2
  from tensorboardX.proto.api_pb2 import DataType, HParamInfo, Interval
  if isinstance(dist, (FloatDistribution, IntDistribution)):
    return HParamInfo(name=name, type=DataType.Value('DATA_TYPE_FLOAT64'),
                      domain_interval=Interval(min_value=dist.low, max_value=dist.high))
  if isinstance(dist, CategoricalDistribution):
    values = struct_pb2.ListValue()
    values.extend([c if isinstance(c, (str, bool, int, float)) else str(c) for c in dist.choices])
    kinds = {type(c) for c in dist.choices}
    kind = ('DATA_TYPE_STRING' if kinds == {str} else 'DATA_TYPE_BOOL' if kinds == {bool}
            else 'DATA_TYPE_FLOAT64')
    return HParamInfo(name=name, type=DataType.Value(kind), domain_discrete=values)
  kind = ('DATA_TYPE_STRING' if isinstance(example, str) else
          'DATA_TYPE_BOOL' if isinstance(example, bool) else 'DATA_TYPE_FLOAT64')
  return HParamInfo(name=name, type=DataType.Value(kind))


def write_config(base_dir: str, distributions: Mapping[str, BaseDistribution],
                 examples: Mapping[str, Any], metrics: Iterable[tuple[str, str]]) -> str:
  """Writes the experiment config into `base_dir` (replacing the previous one).

  Args:
    distributions: `{param: distribution}` (the domains shown in the dashboard).
    examples: `{param: a value}` for params without a distribution (their type).
    metrics: `(group, tag)` pairs, e.g. `('eval', 'loss')`.
  """
  from tensorboardX.proto.api_pb2 import Experiment, MetricInfo, MetricName
  names = sorted(set(distributions) | set(examples))
  infos = [_hparam_info(n, distributions.get(n), examples.get(n)) for n in names]
  mts = [MetricInfo(name=MetricName(group=g, tag=t)) for g, t in metrics]
  summary = _summary(_EXPERIMENT_TAG, experiment=Experiment(hparam_infos=infos, metric_infos=mts))
  os.makedirs(base_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.hparams', dir=base_dir)
  try:
    _write(tmp, [summary], '.hparams')
    (name,) = os.listdir(tmp)
    path = os.path.join(base_dir, CONFIG_FILE)
    os.replace(os.path.join(tmp, name), path)
  finally:
    for leftover in os.listdir(tmp):
      os.remove(os.path.join(tmp, leftover))
    os.rmdir(tmp)
  return path


def write_session_start(model_dir: str, params: Mapping[str, Any], group: str) -> None:
  """The trial's session: its parameter values (numbers, strings, booleans; others as text)."""
  from tensorboardX.proto.plugin_hparams_pb2 import SessionStartInfo
  info = SessionStartInfo(group_name=group, start_time_secs=time.time())
  for k, v in params.items():
    if isinstance(v, bool):
      info.hparams[k].bool_value = v
    elif isinstance(v, (int, float)):
      info.hparams[k].number_value = float(v)
    else:
      info.hparams[k].string_value = str(v)
  _write(model_dir, [_summary(_START_TAG, session_start_info=info)], '.hparams_start')


def write_session_end(model_dir: str, state: str) -> None:
  """The trial's end: its Optuna state as the dashboard's status (see `STATUS`)."""
  from tensorboardX.proto.api_pb2 import Status
  from tensorboardX.proto.plugin_hparams_pb2 import SessionEndInfo
  info = SessionEndInfo(status=Status.Value(STATUS.get(state, 'STATUS_UNKNOWN')),
                        end_time_secs=time.time())
  _write(model_dir, [_summary(_END_TAG, session_end_info=info)], '.hparams_end')


__all__ = ['write_config', 'write_session_start', 'write_session_end', 'CONFIG_FILE', 'STATUS']
