"""LatestExporter, FinalExporter and BestExporter: when they export, what they keep, restarts."""
import json
import os

import pytest

from _export_models import CUSTOM_SPEC
from jestimator import export


@pytest.fixture(scope='module')
def est(models):
  return models.get('custom')[0]


def _fn():
  return export.build_raw_serving_input_fn(CUSTOM_SPEC)


def _versions(path):
  return sorted(n for n in os.listdir(path) if n.isdigit())


def test_latest_exporter_keeps_the_newest(est):
  exporter = export.LatestExporter('latest', _fn(), exports_to_keep=2)
  assert exporter.name == 'latest'
  base = os.path.join(est.model_dir, 'export', exporter.name)
  paths = [exporter.export(est, base, est.latest_checkpoint(), {'loss': 1.0}, False)
           for _ in range(3)]
  assert _versions(base) == [os.path.basename(p) for p in paths[1:]]
  assert export.load(paths[-1]).global_step == 20


def test_final_exporter_only_at_the_end(est, tmp_path):
  exporter = export.FinalExporter('final', _fn())
  assert exporter.export(est, str(tmp_path), None, {'loss': 1.0}, False) is None
  assert not os.path.exists(tmp_path / '0') and os.listdir(tmp_path) == []
  path = exporter.export(est, str(tmp_path), None, {'loss': 1.0}, True)
  assert _versions(tmp_path) == [os.path.basename(path)]


def test_best_exporter_exports_improvements_and_survives_a_restart(est, tmp_path):
  base = str(tmp_path)
  first = export.BestExporter(serving_input_fn=_fn(), exports_to_keep=2)
  assert first.name == 'best_exporter'
  assert first.export(est, base, None, {'loss': 0.5, 'global_step': 10}, False) is not None
  assert first.export(est, base, None, {'loss': 0.7}, False) is None  # worse
  better = first.export(est, base, None, {'loss': 0.4}, False)
  assert better is not None and len(_versions(base)) == 2
  with open(os.path.join(base, 'best_eval_result.json')) as f:
    doc = json.load(f)
  assert doc['eval_result']['loss'] == 0.4 and doc['export_path'] == better
  # A new exporter (a restarted job) compares with the best on disk, not with nothing.
  restarted = export.BestExporter(serving_input_fn=_fn(), exports_to_keep=2)
  assert restarted.export(est, base, None, {'loss': 0.45}, False) is None
  newest = restarted.export(est, base, None, {'loss': 0.3}, False)
  assert newest is not None
  assert _versions(base) == sorted([os.path.basename(better), os.path.basename(newest)])


def test_best_exporter_custom_compare_fn(est, tmp_path):
  higher_auc = lambda best_eval_result, current_eval_result: (
      current_eval_result['auc'] > best_eval_result['auc'])
  exporter = export.BestExporter('auc', _fn(), compare_fn=higher_auc)
  assert exporter.export(est, str(tmp_path), None, {'auc': 0.8}, False) is not None
  assert exporter.export(est, str(tmp_path), None, {'auc': 0.7}, False) is None
  assert exporter.export(est, str(tmp_path), None, {'auc': 0.9}, False) is not None


def test_exporter_argument_errors():
  with pytest.raises(ValueError, match='exports_to_keep'):
    export.LatestExporter('latest', exports_to_keep=0)
  with pytest.raises(ValueError, match='must include best_eval_result'):
    export.BestExporter(compare_fn=lambda result: True)
  with pytest.raises(ValueError, match='exporter name'):
    export.FinalExporter('')
  with pytest.raises(ValueError, match='"loss" entry'):
    export.loss_smaller({'auc': 1.0}, {'loss': 1.0})
