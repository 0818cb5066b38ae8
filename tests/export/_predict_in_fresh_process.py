"""Run as a script in a fresh process: loads exports and scores raw features with them.

  python _predict_in_fresh_process.py MANIFEST.json

The manifest lists `{"export": path, "inputs": npz of raw features, "signature": name,
"batch_sizes": [...], "out": npz to write}`. Outputs are written as `<batch>/<key>` arrays (string
outputs as bytes arrays). Also records which modules got imported, to show that the code defining
the models (the tests' `_export_models`) was not needed.
"""
import json
import sys

import numpy as np

from jestimator import export


def main(manifest_path):
  with open(manifest_path) as f:
    manifest = json.load(f)
  for job in manifest['jobs']:
    model = export.load(job['export'])
    with np.load(job['inputs'], allow_pickle=False) as data:
      raw = {k: data[k] for k in data.files}
    out = {}
    for n in job['batch_sizes']:
      pred = model.predict({k: v[:n] for k, v in raw.items()}, job['signature'])
      for key, value in pred.items():
        out[f'{n}/{key}'] = value.astype('S') if value.dtype == object else value
    np.savez(job['out'], **out)
  modules = sorted(m for m in sys.modules
                   if m.startswith(('jestimator', 'conftest', '_models', '_export_models')))
  with open(manifest['modules_out'], 'w') as f:
    json.dump(modules, f)


if __name__ == '__main__':
  main(sys.argv[1])
