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

The loading half (`load`, `ServedModel`, ...) lives in `jestimator.serving`; names load lazily
(PEP 562), so `jestimator.export.load` does not import the writer (Orbax, the driver).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports on first use
  from jestimator.export.artifact import export_estimator
  from jestimator.export.exporters import (BestExporter, Exporter, FinalExporter, LatestExporter,
                                           loss_smaller)
  from jestimator.serving.format import FORMAT_VERSION
  from jestimator.serving.input_spec import (ParsingServingInput, RawServingInput,
                                             build_parsing_serving_input_fn,
                                             build_raw_serving_input_fn)
  from jestimator.serving.loader import ServedModel, Signature, is_export, latest_export, load

_LAZY = {
    'export_estimator': 'jestimator.export.artifact',
    'BestExporter': 'jestimator.export.exporters', 'Exporter': 'jestimator.export.exporters',
    'FinalExporter': 'jestimator.export.exporters', 'LatestExporter': 'jestimator.export.exporters',
    'loss_smaller': 'jestimator.export.exporters',
    'FORMAT_VERSION': 'jestimator.serving.format',
    'ParsingServingInput': 'jestimator.serving.input_spec',
    'RawServingInput': 'jestimator.serving.input_spec',
    'build_parsing_serving_input_fn': 'jestimator.serving.input_spec',
    'build_raw_serving_input_fn': 'jestimator.serving.input_spec',
    'ServedModel': 'jestimator.serving.loader', 'Signature': 'jestimator.serving.loader',
    'is_export': 'jestimator.serving.loader', 'latest_export': 'jestimator.serving.loader',
    'load': 'jestimator.serving.loader',
}

__all__ = [
    'BestExporter', 'Exporter', 'FORMAT_VERSION', 'FinalExporter', 'LatestExporter',
    'ParsingServingInput', 'RawServingInput', 'ServedModel', 'Signature',
    'build_parsing_serving_input_fn', 'build_raw_serving_input_fn',
    'export_estimator', 'is_export', 'latest_export', 'load', 'loss_smaller',
]


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
