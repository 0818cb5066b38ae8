"""Generates tests/tf_parity/data/export_exporters.json with TF 2.15's exporters (run in the TF venv).

    /work/tfvenv/bin/python tests/tf_parity/tf_scripts/export_exporters.py

Like TF's own exporter_test.py, the estimator is a mock whose `export_saved_model` returns a path
without writing; each scenario records which evaluations TF's BestExporter exported (or the
error it raised), and which folders LatestExporter's garbage collection left.
"""
import json
import math
import os
import tempfile
from unittest import mock

import tensorflow as tf  # noqa: F401  (tensorflow_estimator needs it loaded)
from tensorflow_estimator.python.estimator import estimator as estimator_lib
from tensorflow_estimator.python.estimator import exporter as exporter_lib

OUT = os.path.join(os.path.dirname(__file__), '..', 'data', 'export_exporters.json')


def _estimator(model_dir):
  est = mock.Mock(spec=estimator_lib.Estimator)
  est.model_dir = model_dir
  est.export_saved_model.return_value = 'export_result_path'
  return est


def _run_best(evals, compare_fn=None):
  """[True / False per evaluation, or the error's type name where TF raised]."""
  model_dir = tempfile.mkdtemp()
  kwargs = {} if compare_fn is None else {'compare_fn': compare_fn}
  exporter = exporter_lib.BestExporter('best', lambda: None, **kwargs)
  est, out = _estimator(model_dir), []
  export_path = os.path.join(model_dir, 'export', 'best')
  os.makedirs(export_path)  # TF's garbage collection lists it
  for result in evals:
    try:
      out.append(exporter.export(est, export_path, 'ckpt', result, False) is not None)
    except Exception as e:  # noqa: BLE001 - recorded
      out.append(type(e).__name__)
  return out


def _reversed_args(current_eval_result, best_eval_result):
  return current_eval_result['accuracy'] > best_eval_result['accuracy']


def _compare_fn_errors():
  out = {}
  for name, fn in (('two_other_names', lambda a, b: True),
                   ('extra_arg', lambda best_eval_result, current_eval_result, x=1: True),
                   ('none', None)):
    try:
      exporter_lib.BestExporter('best', lambda: None, compare_fn=fn)
      out[name] = None
    except Exception as e:  # noqa: BLE001 - recorded
      out[name] = type(e).__name__
  return out


def _latest_gc_positional():
  """LatestExporter('latest', fn, None): the third positional is assets_extra (keep stays 5)."""
  base = tempfile.mkdtemp()
  folders = [str(1500000000 + i) for i in range(7)] + ['1', '12345', 'notes']
  for f in folders:
    os.makedirs(os.path.join(base, f))
  exporter = exporter_lib.LatestExporter('latest', lambda: None, None)
  exporter.export(_estimator(base), base, 'ckpt', {'loss': 1.0}, False)
  return {'folders': folders, 'left': sorted(os.listdir(base))}


def main():
  doc = {
      'reversed_compare_fn': {'accuracies': [0.5, 0.9, 0.7, 0.95],
                              'exported': _run_best([{'accuracy': a}
                                                     for a in (0.5, 0.9, 0.7, 0.95)],
                                                    _reversed_args)},
      'nan_loss': {'losses': ['nan', 0.5, 0.1],
                   'exported': _run_best([{'loss': math.nan}, {'loss': 0.5}, {'loss': 0.1}])},
      'none_first': {'exported': _run_best([None, {'loss': 1.0}, {'loss': 0.5}])},
      'empty_first': {'exported': _run_best([{}, {'loss': 1.0}])},
      'compare_fn_errors': _compare_fn_errors(),
      'latest_gc_positional': _latest_gc_positional(),
      'tf_version': tf.__version__,
  }
  with open(OUT, 'w') as f:
    json.dump(doc, f, indent=1, sort_keys=True)
    f.write('\n')
  print(json.dumps(doc, indent=1))


if __name__ == '__main__':
  main()
