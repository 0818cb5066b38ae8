"""Export and serving: self-contained artifacts built on `jax.export` that take raw features.

- `Estimator.export_saved_model(export_dir_base, serving_input_fn=None, assets_extra=None,
  as_text=False, checkpoint_path=None, platforms=None)` (TF's order) writes
  `export_dir_base/<timestamp>/` (see `artifact` for the layout).
- `load(path) -> ServedModel`: `.signatures`, `.predict(raw_features, signature)`; needs no model
  code.
- `build_raw_serving_input_fn(feature_spec)`: the raw inputs of a model without feature columns.
- `build_parsing_serving_input_fn(parse_spec)`: exports that take serialized tf.Examples.
- `LatestExporter`, `BestExporter`, `FinalExporter`: exports for `train_and_evaluate`.
- `jestimator-serve --model_base_path DIR` (or `python -m jestimator.serve`): a TF Serving
  compatible REST server (version policies, hot reload, Prometheus metrics).
"""
from __future__ import annotations

from jestimator.export.artifact import FORMAT_VERSION, export_estimator
from jestimator.export.exporters import (BestExporter, Exporter, FinalExporter, LatestExporter,
                                         loss_smaller)
from jestimator.export.served_model import (ServedModel, Signature, is_export, latest_export,
                                            load)
from jestimator.export.serving_input import (ParsingServingInput, RawServingInput,
                                             build_parsing_serving_input_fn,
                                             build_raw_serving_input_fn)

__all__ = [
    'BestExporter', 'Exporter', 'FORMAT_VERSION', 'FinalExporter', 'LatestExporter',
    'ParsingServingInput', 'RawServingInput', 'ServedModel', 'Signature',
    'build_parsing_serving_input_fn', 'build_raw_serving_input_fn',
    'export_estimator', 'is_export', 'latest_export', 'load', 'loss_smaller',
]
