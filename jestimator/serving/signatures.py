"""Export signatures: which outputs each has, how its string outputs are made, TF's names for them.

A signature is described in `signature.json` as
`{"method_name": "tensorflow/serving/classify", "function": "functions/00_x.jaxexport",
  "outputs": {key: {"dtype": ..., "shape": [-1, ...]}},
  "string_outputs": {key: {"ids_key": ..., "vocabulary": [...] or null}}}`
where `string_outputs` are made on the host from integer outputs (JAX holds no strings):
`outputs[key] = vocabulary[outputs[ids_key]]` as bytes, or the decimal id when `vocabulary` is null
(TF's `classes` of a classifier without `label_vocabulary`).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jestimator.model import export_output as eo
from jestimator.model import predictions

DEFAULT = 'serving_default'
CLASSIFY_METHOD = 'tensorflow/serving/classify'
REGRESS_METHOD = 'tensorflow/serving/regress'
PREDICT_METHOD = 'tensorflow/serving/predict'

_TF_DTYPES = {'float32': 'DT_FLOAT', 'float64': 'DT_DOUBLE', 'float16': 'DT_HALF',
              'bfloat16': 'DT_BFLOAT16', 'int8': 'DT_INT8', 'int16': 'DT_INT16',
              'int32': 'DT_INT32', 'int64': 'DT_INT64', 'uint8': 'DT_UINT8',
              'uint16': 'DT_UINT16', 'uint32': 'DT_UINT32', 'uint64': 'DT_UINT64',
              'bool': 'DT_BOOL', 'string': 'DT_STRING'}


def method_name(output: eo.ExportOutput) -> str:
  """TF Serving's method name of an export output."""
  if isinstance(output, eo.ClassificationOutput):
    return CLASSIFY_METHOD
  if isinstance(output, eo.RegressionOutput):
    return REGRESS_METHOD
  return PREDICT_METHOD


def string_outputs(output: eo.ExportOutput, spec_string_outputs: Mapping[str, tuple] | None,
                   output_keys) -> dict[str, dict[str, Any]]:
  """The host-made string outputs of one signature.

  A `ClassificationOutput`'s `classes` ids become names through its `class_vocabulary` (or decimal
  ids); any other signature takes the spec's `string_outputs` whose ids it outputs.
  """
  out = {}
  if isinstance(output, eo.ClassificationOutput):
    if output.classes is not None:
      vocab = output.class_vocabulary
      out['classes'] = {'ids_key': 'classes',
                        'vocabulary': None if vocab is None else [str(w) for w in vocab]}
    return out
  for key, (ids_key, vocab) in (spec_string_outputs or {}).items():
    if ids_key in output_keys:
      out[key] = {'ids_key': ids_key, 'vocabulary': [str(w) for w in vocab]}
  return out


def finish(outputs: dict[str, np.ndarray], strings: Mapping[str, Mapping[str, Any]]
           ) -> dict[str, np.ndarray]:
  """Adds the string outputs (object arrays of bytes) to a signature's numeric outputs."""
  with_vocab = {k: (s['ids_key'], s['vocabulary']) for k, s in strings.items()
                if s['vocabulary'] is not None}
  outputs = predictions.finish(outputs, with_vocab, None)
  for key, s in strings.items():
    if s['vocabulary'] is None:
      ids = np.asarray(outputs[s['ids_key']])
      outputs[key] = np.char.encode(ids.astype(np.int64).astype(str), 'ascii').astype(object)
  return outputs


def tf_dtype(dtype: str) -> str:
  """TF's enum name of a dtype (`'float32'` -> `'DT_FLOAT'`), as TF Serving's metadata shows it."""
  return _TF_DTYPES.get(dtype, 'DT_INVALID')


def tensor_info(key: str, dtype: str, shape) -> dict[str, Any]:
  """TF Serving's TensorInfo JSON for a tensor with a leading batch dimension (-1)."""
  return {'dtype': tf_dtype(dtype), 'name': key,
          'tensor_shape': {'dim': [{'size': str(int(d)), 'name': ''} for d in shape],
                           'unknown_rank': False}}
