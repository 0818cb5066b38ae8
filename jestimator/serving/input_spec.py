"""The raw inputs a served model takes: `build_raw_serving_input_fn` and the input spec format.

A raw input spec is `{feature_key: {'dtype': str, 'shape': [int, ...], 'multivalent': bool}}`:
`dtype` is `'string'` or a numpy dtype name, `shape` the per-example shape (no batch dimension),
and `multivalent` marks features whose rows are variable-length lists (parsed by feature columns).
Models with feature columns derive it from the columns (`HostStage.raw_signature()`); a custom
`model_fn` without columns declares it with `build_raw_serving_input_fn`.

`build_parsing_serving_input_fn(parse_spec)` makes an export that takes serialized
`tf.train.Example`s (as TF's parsing receiver): the export keeps the parse spec, and the served
model parses requests with `jestimator.io.parse_example` before the host stage.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Collection, Mapping

import numpy as np

STRING = 'string'


@dataclasses.dataclass(frozen=True)
class RawServingInput:
  """What a serving input function returns: the raw features of the exported signatures.

  Attributes:
    features: `{key: {'dtype', 'shape', 'multivalent'}}` (see the module docstring).
  """
  features: Mapping[str, Mapping[str, Any]]

  def __post_init__(self):
    object.__setattr__(self, 'features', canonical_specs(self.features, 'RawServingInput'))


def build_raw_serving_input_fn(feature_spec: Mapping[str, Any]) -> Callable[[], RawServingInput]:
  """A serving input function that feeds raw features straight to the model (TF's raw receiver).

  Args:
    feature_spec: `{key: (dtype, shape)}` with the per-example shape (no batch dimension), e.g.
      `{'x': ('float32', [4]), 'country': ('string', [])}`; a value may also be a dict with `dtype`,
      `shape` and optionally `multivalent`.

  Returns:
    A function of no arguments returning a `RawServingInput`, for
    `Estimator.export_saved_model(base, serving_input_fn=...)` and the exporters.

  Example:
    fn = build_raw_serving_input_fn({'x': (np.float32, [4])})
    path = estimator.export_saved_model('/tmp/export', serving_input_fn=fn)
  """
  specs = canonical_specs(feature_spec, 'build_raw_serving_input_fn')
  return lambda: RawServingInput(specs)


@dataclasses.dataclass(frozen=True)
class ParsingServingInput(RawServingInput):
  """A `RawServingInput` whose features come from parsing serialized Examples with `parse_spec`.

  Attributes:
    parse_spec: `{key: jestimator.io.FixedLenFeature | VarLenFeature}`.
  """
  parse_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def build_parsing_serving_input_fn(feature_spec: Mapping[str, Any]
                                   ) -> Callable[[], ParsingServingInput]:
  """A serving input function whose exports take serialized `tf.train.Example`s (TF's
  `build_parsing_serving_input_receiver_fn`).

  Args:
    feature_spec: a parse spec `{key: FixedLenFeature | VarLenFeature}`, e.g.
      `jestimator.columns.make_parse_example_spec(feature_columns)` (without the label).

  Returns:
    A function of no arguments for `Estimator.export_saved_model(base, serving_input_fn=...)` and
    the exporters. The loaded export's `predict` takes a list of serialized Examples (or
    `{'examples': [...]}`), its REST predict signature a single string input `examples`
    (`{"instances": [{"b64": "..."}]}`), and it still takes raw feature dicts.

  Example:
    fn = build_parsing_serving_input_fn(make_parse_example_spec(cols))
    path = estimator.export_saved_model('/tmp/export', serving_input_fn=fn)
    jestimator.export.load(path).predict([example.SerializeToString()])
  """
  from jestimator.io import parsing  # deferred: only parsing exports need protobuf
  spec = parsing.check_spec(feature_spec, 'build_parsing_serving_input_fn')
  raw = {k: {'dtype': f.dtype, 'shape': list(getattr(f, 'shape', ())),
             'multivalent': isinstance(f, parsing.VarLenFeature)} for k, f in spec.items()}
  specs = canonical_specs(raw, 'build_parsing_serving_input_fn')
  return lambda: ParsingServingInput(specs, spec)


def parse_spec_of(serving_input_fn: Callable | None) -> dict | None:
  """The parse spec of a parsing serving input function, else None."""
  out = serving_input_fn() if callable(serving_input_fn) else None
  return dict(out.parse_spec) if isinstance(out, ParsingServingInput) else None


def canonical_dtype(dtype: Any, what: str) -> str:
  """'string' for str/bytes/object dtypes, else the numpy dtype name ('float32', 'int64', ...)."""
  if dtype in (str, bytes, object, STRING, 'str', 'bytes', 'object'):
    return STRING
  try:
    d = np.dtype(dtype)
  except TypeError:
    raise TypeError(f'{what}: dtype {dtype!r} is not a numpy dtype or "string"') from None
  if d.kind in 'OSU':
    return STRING
  if d.kind not in 'biuf':
    raise TypeError(f'{what}: dtype {d} is not supported (use a bool, int, float or string dtype)')
  return d.name


def canonical_specs(feature_spec: Mapping[str, Any], what: str) -> dict[str, dict[str, Any]]:
  """`{key: {'dtype': str, 'shape': [int], 'multivalent': bool}}` from the accepted spellings."""
  if not isinstance(feature_spec, Mapping) or not feature_spec:
    raise ValueError(f'{what}: feature_spec must be a non-empty dict {{key: (dtype, shape)}}, got '
                     f'{feature_spec!r}')
  out = {}
  for key, value in feature_spec.items():
    if not isinstance(key, str) or not key:
      raise ValueError(f'{what}: feature keys must be non-empty strings, got {key!r}')
    here = f'{what}: feature {key!r}'
    if isinstance(value, Mapping):
      dtype, shape, multi = value.get('dtype'), value.get('shape', ()), value.get('multivalent',
                                                                                  False)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
      (dtype, shape), multi = value, False
    else:
      raise ValueError(f'{here}: expected (dtype, shape) or a dict with dtype and shape, got '
                       f'{value!r}')
    if shape is None:
      shape = ()
    if isinstance(shape, (int, np.integer)):
      shape = (int(shape),)
    try:
      shape = [int(d) for d in shape]
    except (TypeError, ValueError):
      raise ValueError(f'{here}: shape must be a list of ints (per example, no batch '
                       f'dimension), got {shape!r}') from None
    if any(d < 0 for d in shape) and not multi:
      raise ValueError(f'{here}: shape {shape} has unknown dimensions; only multivalent features '
                       '(parsed by feature columns) may vary in length')
    out[key] = {'dtype': canonical_dtype(dtype, here), 'shape': shape, 'multivalent': bool(multi)}
  return out


def call_serving_input_fn(serving_input_fn: Callable) -> dict[str, dict[str, Any]]:
  """The canonical raw spec a serving input function declares."""
  if not callable(serving_input_fn):
    raise TypeError(f'serving_input_fn must be callable (e.g. build_raw_serving_input_fn(spec)), '
                    f'got {type(serving_input_fn).__name__}')
  out = serving_input_fn()
  if isinstance(out, RawServingInput):
    return dict(out.features)
  if isinstance(out, Mapping):
    return canonical_specs(out, 'serving_input_fn')
  raise TypeError('serving_input_fn must return a RawServingInput (see '
                  f'build_raw_serving_input_fn) or a feature spec dict, got {type(out).__name__}')


def example_batch(specs: Mapping[str, Mapping[str, Any]], n: int, length: int = 1,
                  ragged: Collection[str] = ()) -> dict[str, np.ndarray]:
  """A dummy raw batch of `n` rows: '' for strings, 0 for numbers.

  Multivalent features and those in `ragged` get `length` values per example (one list per row).
  Used to trace an export and to warm up a served model.
  """
  out = {}
  for key, s in specs.items():
    string = s['dtype'] == STRING
    fill, dtype = ('', object) if string else (np.zeros((), s['dtype']), s['dtype'])
    per = [max(d, 1) for d in s['shape']]
    if s['multivalent'] or key in ragged:
      row = np.full([length] + per, fill, dtype).tolist()
      rows = np.empty(n, object)
      for i in range(n):
        rows[i] = row
      out[key] = rows
    else:
      out[key] = np.full([n] + per, fill, dtype)
  return out
