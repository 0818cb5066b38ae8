"""Serving: load an export and score raw features without the model's code, over Python or TF
Serving's REST API.

- `load(path) -> ServedModel` (`loader`): checks the manifest, rebuilds the host stage, runs the
  serialized `jax.export` programs; `raw_features` normalises requests; `signatures`,
  `input_spec`, `device_inputs`, `tensors`, `manifest` and `format` are the export format, which
  the writer (`jestimator.export`) shares.
- `ModelServer` (`server`, `rest`, `transport`, `batcher`, `versions`, `config`, `metrics`): the
  REST server behind `jestimator-serve`.

Importing this package loads numpy, jax (for `jax.export`) and these modules only: no Orbax,
optax, flax, pandas, TensorBoard writer, training loops or canned estimators, so a server starts
fast and a serving image needs none of them.
"""
from __future__ import annotations

from jestimator.serving.loader import ServedModel, Signature, is_export, latest_export, load
from jestimator.serving.server import ModelServer
from jestimator.serving.versions import VersionPolicy

__all__ = ['ModelServer', 'ServedModel', 'Signature', 'VersionPolicy', 'is_export',
           'latest_export', 'load']
