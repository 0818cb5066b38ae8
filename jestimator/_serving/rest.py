"""TF Serving's REST API formats: request bodies -> raw feature columns, outputs -> JSON bodies.

Predict: `{"signature_name": s, "instances": [row, ...]}` (row format; a row is `{input: value}`, or
the bare value when the signature has one input) or `{"inputs": {input: [values]}}` (columnar; a
bare list for a single input). Answers `{"predictions": [...]}` (rows; bare values when there is a
single output) or `{"outputs": {...}}`. Classify / regress: `{"examples": [{...}],
"context": {...}}` answered by `{"results": ...}` (TF Serving's `kClassifyRegressResponseKey`; its
REST page's `"result"` is a doc error). Binary strings may be sent as `{"b64": "..."}`. float32
outputs are written as TF Serving's `json_tensor.cc` writes them: six significant digits when they
read back as the same float32, else nine.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

import numpy as np

from jestimator.export import signatures as sigs


class RequestError(ValueError):
  """A malformed request (HTTP 400)."""


def _b64(value: Any) -> Any:
  """Decodes `{"b64": ...}` values (recursively in lists) to bytes."""
  if isinstance(value, dict):
    if set(value) != {'b64'} or not isinstance(value['b64'], str):
      raise RequestError(f'a JSON object as a value must be {{"b64": "<base64>"}}, got '
                         f'{str(value)[:80]}')
    try:
      return base64.b64decode(value['b64'], validate=True)
    except (binascii.Error, ValueError) as e:
      raise RequestError(f'invalid base64 value ({e})') from None
  if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
    return [_b64(v) for v in value]
  return value


def _body(body: Any) -> Mapping[str, Any]:
  if not isinstance(body, dict):
    raise RequestError(f'the request body must be a JSON object, got {type(body).__name__}')
  return body


def predict_columns(body: Any, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
  """`({input: list}, row_format)` of a predict request."""
  body = _body(body)
  has_rows, has_cols = 'instances' in body, 'inputs' in body
  if has_rows == has_cols:
    raise RequestError('the request must have exactly one of "instances" (row format) or '
                       '"inputs" (columnar format)')
  if has_rows:
    return rows_to_columns(body['instances'], inputs, 'instance'), True
  cols = body['inputs']
  if not isinstance(cols, dict):
    if len(inputs) != 1:
      raise RequestError(f'"inputs" must be an object {{input: values}} since the model takes '
                         f'{len(inputs)} inputs {sorted(inputs)}')
    cols = {next(iter(inputs)): cols}
  return {k: _b64(v) for k, v in cols.items()}, False


def rows_to_columns(rows: Any, inputs: Mapping[str, Any], what: str,
                    context: Mapping[str, Any] | None = None) -> dict[str, list]:
  """Row-format values (a list of `{input: value}`) as columns, for the model's inputs."""
  if not isinstance(rows, list) or not rows:
    raise RequestError(f'"{what}s" must be a non-empty list, got {str(rows)[:80]}')
  keys = list(inputs)
  if len(keys) == 1 and (not isinstance(rows[0], dict) or set(rows[0]) == {'b64'}):
    return {keys[0]: _b64(rows)}  # bare values, e.g. serialized Examples as {"b64": ...}
  context = context or {}
  cols: dict[str, list] = {k: [] for k in keys}
  for i, row in enumerate(rows):
    if not isinstance(row, dict):
      raise RequestError(f'{what} {i} must be an object {{input: value}}, got {str(row)[:80]}')
    for k in keys:
      if k in row:
        cols[k].append(row[k])
      elif k in context:
        cols[k].append(context[k])
      else:
        raise RequestError(f'{what} {i} is missing feature {k!r}; the model takes {sorted(keys)}')
  return {k: _b64(v) for k, v in cols.items()}


def examples_columns(body: Any, inputs: Mapping[str, Any]) -> dict[str, list]:
  """Columns of a classify / regress request (`examples`, with shared `context` features)."""
  body = _body(body)
  if 'examples' not in body:
    raise RequestError('a classify / regress request needs "examples": [{feature: value}, ...]')
  context = body.get('context') or {}
  if not isinstance(context, dict):
    raise RequestError(f'"context" must be an object, got {str(context)[:80]}')
  examples = body['examples']
  if isinstance(examples, list) and examples and not all(isinstance(e, dict) for e in examples):
    raise RequestError('every entry of "examples" must be an object {feature: value}')
  return rows_to_columns(examples, inputs, 'example', context)


_JSON_TYPES = {'string': (str, bytes), 'f': (int, float), 'i': (int, float), 'u': (int, float),
               'b': (bool,)}


def check_types(columns: Mapping[str, Any], inputs: Mapping[str, Mapping[str, Any]],
                examples: bool = False) -> None:
  """Strict JSON types per feature: numbers (not `true`) for numeric features, only strings for
  string features, only booleans for bool ones; `null` (a missing value) anywhere.

  numpy would quietly turn `[true, 1.5]` into floats and `["a", 1]` into strings; this check
  sees the JSON values themselves, so a batch is judged like each of its rows alone.
  `examples` (classify / regress): a float feature takes only numbers written with a decimal point
  or exponent, as TF Serving, whose `json_tensor.cc` makes a JSON integer an int64 feature that
  the float feature's parse refuses.
  """
  for key, values in columns.items():
    spec = inputs.get(key)
    if spec is None:
      continue
    dtype = spec['dtype']
    kind = 'string' if dtype == 'string' else np.dtype(dtype).kind
    allowed = (float,) if examples and kind == 'f' else _JSON_TYPES[kind]
    stack, index = [values], 0
    while stack:
      v = stack.pop()
      if isinstance(v, list):
        stack.extend(v)
        continue
      index += 1
      if v is None or (isinstance(v, allowed) and (kind == 'b' or not isinstance(v, bool))):
        continue
      want = 'strings' if kind == 'string' else 'booleans' if kind == 'b' else f'{dtype} numbers'
      if allowed == (float,):
        want += ' written with a decimal point (an integer is an int64 feature in TF Serving)'
      raise RequestError(f'feature {key!r} must hold {want}, got {_json_name(v)} {v!r}')


def _json_name(v: Any) -> str:
  return {bool: 'the boolean', str: 'the string', int: 'the number', float: 'the number',
          dict: 'the object', bytes: 'the binary string'}.get(type(v), type(v).__name__)


NAN_POLICIES = ('nan', 'null', 'error')


def finite_outputs(out: Mapping[str, np.ndarray], policy: str) -> dict[str, np.ndarray]:
  """Applies the NaN policy to float outputs: 'nan' keeps NaN/Infinity (TF Serving writes them,
  though strict JSON parsers reject them), 'null' writes null, 'error' fails the request."""
  out = dict(out)
  for k, v in out.items():
    if v.dtype.kind != 'f':
      continue
    bad = ~np.isfinite(v)
    if not bad.any() or policy == 'nan':
      continue
    if policy == 'error':
      raise ValueError(f'output {k!r} holds NaN or infinity ({int(bad.sum())} values); the '
                       'server runs with --nan_policy=error')
    v = decimal_values(v).astype(object)
    v[bad] = None
    out[k] = v
  return out


def decimal_values(arr: np.ndarray) -> np.ndarray:
  """float32 values as the float64s of the decimals TF Serving writes (others unchanged).

  `json_tensor.cc`'s `WriteDecimal`: `%.6g` when it reads back as the same float32, else `%.9g`
  (`max_digits10`). The float64 nearest that decimal prints as it (Python's shortest repr), so
  the JSON carries `0.107671708`, not the float32's exact `0.10767170786857605`. The formatting is
  per value, the same order of cost as the JSON encoding itself.
  """
  if arr.dtype != np.float32:
    return arr
  values = arr.astype(np.float64).reshape(-1).tolist()
  six = np.array([float(f'{v:.6g}') for v in values], np.float64)
  redo = np.flatnonzero(six.astype(np.float32) != arr.reshape(-1))  # NaN too: kept as NaN
  six[redo] = [float(f'{values[i]:.9g}') for i in redo.tolist()]
  return six.reshape(arr.shape)


def jsonable(arr: np.ndarray) -> list:
  """A numpy output as (nested) lists; bytes as UTF-8 strings, float32 as TF Serving's decimals."""
  if arr.dtype.kind == 'S' or (arr.dtype == object and arr.size and isinstance(
      arr.reshape(-1)[0], bytes)):
    arr = np.char.decode(arr.astype('S'), 'utf-8', errors='replace')
  return decimal_values(arr).tolist()


def predict_response(out: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
  """`{"predictions": ...}` (row format) or `{"outputs": ...}` (columnar), as TF Serving."""
  cols = {k: jsonable(v) for k, v in out.items()}
  if row_format:
    if len(cols) == 1:
      return {'predictions': next(iter(cols.values()))}
    n = len(next(iter(cols.values())))
    return {'predictions': [{k: v[i] for k, v in cols.items()} for i in range(n)]}
  if len(cols) == 1:
    return {'outputs': next(iter(cols.values()))}
  return {'outputs': cols}


RESULTS = 'results'  # TF Serving's kClassifyRegressResponseKey (json_tensor.cc)


def classify_response(out: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """`{"results": [[[label, score], ...] per example]}`, checked as TF Serving's classifier.cc.

  `classes` and `scores` must be `[batch, num_classes]` of the same width; a missing `scores`
  answers score 0.0 (the proto's default), missing `classes` the label "".
  """
  classes, scores = out.get('classes'), out.get('scores')
  for key, arr in (('classes', classes), ('scores', scores)):
    if arr is not None and arr.ndim != 2:
      raise ValueError(f'Expected Tensor shape: [batch_size num_classes] but got {list(arr.shape)}'
                       f' for output {key!r}')
  if classes is not None and classes.dtype.kind not in 'SOU':
    raise ValueError(f'Expected classes Tensor of DT_STRING. Got: {classes.dtype}')
  if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
    raise ValueError('Tensors class and score should match in dim_size(1). Got '
                     f'{classes.shape[1]} vs. {scores.shape[1]}')
  ref = classes if classes is not None else scores
  n, k = ref.shape
  labels = jsonable(classes) if classes is not None else [[''] * k] * n
  values = jsonable(scores) if scores is not None else [[0.0] * k] * n
  return {RESULTS: [[[lab, s] for lab, s in zip(ls, ss)] for ls, ss in zip(labels, values)]}


def regress_response(out: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """`{"results": [value per example]}`; outputs `[batch]` or `[batch, 1]` (TF's regressor.cc)."""
  v = out['outputs']
  if not (v.ndim == 1 or (v.ndim == 2 and v.shape[1] == 1)):
    raise ValueError('Expected output Tensor shape to be either [batch_size] or [batch_size, 1] '
                     f'but got {list(v.shape)}')
  return {RESULTS: jsonable(v.reshape(len(v)))}


def signature_for(model, method: str, name: str | None) -> str:
  """The signature a classify / regress call uses: `name`, or the default one of that method."""
  want = sigs.CLASSIFY_METHOD if method == 'classify' else sigs.REGRESS_METHOD
  if name is None:
    candidates = [sigs.DEFAULT, 'classification' if method == 'classify' else 'regression']
    candidates += sorted(model.signatures)
    name = next((c for c in candidates if c in model.signatures and
                 model.signatures[c].method_name == want), None)
    if name is None:
      raise RequestError(f'this model has no {method} signature; its signatures are '
                         f'{_methods(model)}')
  sig = model.signature(name)
  if sig.method_name != want:
    raise RequestError(f'signature {name!r} is a {sig.method_name} signature, not {want}; '
                       f'signatures: {_methods(model)}')
  return name


def _methods(model) -> dict[str, str]:
  return {n: s.method_name.rsplit('/', 1)[-1] for n, s in sorted(model.signatures.items())}


def metadata(model, name: str, version: int) -> dict[str, Any]:
  """GET /v1/models/NAME/metadata: TF Serving's signature_def map."""
  defs = {}
  for sname, sig in sorted(model.signatures.items()):
    inputs = {k: sigs.tensor_info(k, s['dtype'], [-1] + ([-1] if s['multivalent'] else []) +
                                  list(s['shape']))
              for k, s in sorted(sig.inputs.items())}
    outputs = {k: sigs.tensor_info(k, s['dtype'], s['shape'])
               for k, s in sorted(sig.outputs.items())}
    defs[sname] = {'inputs': inputs, 'outputs': outputs, 'method_name': sig.method_name}
  return {'model_spec': {'name': name, 'signature_name': '', 'version': str(version)},
          'metadata': {'signature_def': {'signature_def': defs}}}


def status(versions, failed: Mapping[int, str] | None = None) -> dict[str, Any]:
  """GET /v1/models/NAME[/versions/V]: TF Serving's status of the given (available) versions,
  and of the versions whose load failed (`{version: error}`): state END with error_code UNKNOWN
  and the error, as TF Serving lists a failed load."""
  rows = {v: {'version': str(v), 'state': 'AVAILABLE',
              'status': {'error_code': 'OK', 'error_message': ''}} for v in versions}
  for v, error in (failed or {}).items():
    rows.setdefault(v, {'version': str(v), 'state': 'END',
                        'status': {'error_code': 'UNKNOWN', 'error_message': error}})
  return {'model_version_status': [rows[v] for v in sorted(rows, reverse=True)]}
