"""Loading an export: `load(path) -> ServedModel`, which scores raw features without model code.

A `ServedModel` rebuilds the host stage from `columns.json`, deserializes one `jax.export.Exported`
per signature and keeps the variables on the device. `predict` runs: raw features (strings allowed)
-> checks -> host stage (numpy) -> batch padded to a power of two up to `MAX_BATCH_BUCKET` rows,
larger batches split into chunks of that size (so at most `log2(MAX_BATCH_BUCKET) + 1` = 11
compiled programs per signature serve every batch size) -> compiled program -> string outputs
(class names) on the host. Loading checks every file against the export's `manifest.json`. An
export made with `build_parsing_serving_input_fn` also takes serialized `tf.train.Example`s, parsed
first.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax
import numpy as np

from jestimator.pipeline import plan as plan_lib
from jestimator.pipeline.host_stage import Preprocessor
from jestimator.serving import device_inputs, manifest, signatures, tensors
from jestimator.serving import raw_features as raw_lib
from jestimator.serving import input_spec as si
from jestimator.serving.format import FORMAT, FORMAT_VERSION

MAX_BATCH_BUCKET = 1024
EXAMPLES = 'examples'  # the single string input of a parsing predict signature (TF's receiver key)
INPUTS = 'inputs'  # ... of a parsing classify / regress signature (TF's signature_def_utils)


@dataclasses.dataclass(frozen=True)
class Signature:
  """One serving signature of an export.

  Attributes:
    name: e.g. 'serving_default', 'classification', 'regression', 'predict'.
    method_name: TF Serving's method ('tensorflow/serving/classify', '.../regress', '.../predict').
    inputs: `{key: {'dtype', 'shape', 'multivalent'}}`: what a predict request gives (per-example
      shapes): the raw features, or for a parsing export one string input named as TF names it:
      `inputs` for classify / regress signatures, `examples` for predict ones.
    outputs: `{key: {'dtype', 'shape'}}` with shape `[-1, ...]` (-1: the batch).
    string_outputs: `{key: {'ids_key', 'vocabulary'}}`: outputs made on the host from ids.
  """
  name: str
  method_name: str
  inputs: Mapping[str, Mapping[str, Any]]
  outputs: Mapping[str, Mapping[str, Any]]
  string_outputs: Mapping[str, Mapping[str, Any]]


def is_export(path: str) -> bool:
  """True when `path` is an export directory (it holds `signature.json`)."""
  return os.path.isfile(os.path.join(path, 'signature.json'))


def latest_export(directory: str) -> str:
  """`directory` itself if it is an export, else its newest `<timestamp>/` export.

  Lets a server or client point at an exporter folder (`model_dir/export/<name>`).
  """
  if is_export(directory):
    return directory
  if not os.path.isdir(directory):
    raise ValueError(f'{directory!r} does not exist')
  versions = sorted((int(n) for n in os.listdir(directory)
                     if n.isdigit() and is_export(os.path.join(directory, n))), reverse=True)
  if not versions:
    raise ValueError(f'{directory!r} is not a jestimator export (no signature.json) and holds no '
                     'exports (<timestamp>/ folders)')
  return os.path.join(directory, str(versions[0]))


def load(path: str) -> ServedModel:
  """Loads the export at `path` (an `export_dir_base/<timestamp>` folder).

  Needs only jax, numpy and jestimator: not the code that defined the model.

  Example:
    model = jestimator.export.load('/tmp/export/1700000000')
    model.predict({'age': [39, 50], 'occupation': ['Sales', 'pilot']})['classes']
  """
  return ServedModel(path)


class ServedModel:
  """A loaded export; thread-safe. See `load`.

  Attributes:
    path: the export folder.
    version: its timestamp (the folder name) as an int, or None.
    global_step: the training step of the checkpoint it was exported from.
    signatures: `{name: Signature}`.
    inputs: the raw input spec shared by all signatures.
    parse_spec: the tf.Example parse spec of a parsing export, else None.
  """

  def __init__(self, path: str):
    path = os.path.abspath(os.fspath(path))
    doc = _read_doc(path)
    self.path = path
    self.version = int(os.path.basename(path)) if os.path.basename(path).isdigit() else None
    self.global_step = int(doc.get('global_step', 0))
    self.platforms = tuple(doc.get('platforms', ()))
    _check_platform(path, self.platforms)
    manifest.verify(path)  # before reading any weights, program or vocabulary
    if not isinstance(doc.get('inputs'), dict) or not doc['inputs']:
      raise ValueError(f'{path!r}: signature.json declares no inputs ({doc.get("inputs")!r}); '
                       'an export needs at least one input feature: the export is damaged')
    self.inputs = {k: dict(v) for k, v in doc['inputs'].items()}
    self.parse_spec = None
    if doc.get('parsing'):
      from jestimator.io import parsing  # deferred: only parsing exports need protobuf
      self.parse_spec = parsing.spec_from_json(doc['parsing'])
    weights = tensors.read(os.path.join(path, 'variables.safetensors'))
    self._host, self._rename = self._host_stage(doc, weights)
    self._device_inputs = doc['device_inputs']
    self._weights = jax.device_put(weights)
    self.signatures: dict[str, Signature] = {}
    self._calls = {}
    self._compiled: dict[str, set[int]] = {}
    for name, s in doc['signatures'].items():
      with open(os.path.join(path, s['function']), 'rb') as f:
        exp = jax.export.deserialize(bytearray(f.read()))
      self._calls[name] = jax.jit(exp.call)
      self.signatures[name] = Signature(name, s['method_name'], self._request_inputs(
          s['method_name']), s['outputs'], s['string_outputs'])

  def __repr__(self) -> str:
    return (f'ServedModel({self.path!r}, step={self.global_step}, '
            f'signatures={sorted(self.signatures)})')

  # -- public -------------------------------------------------------------------------------------
  def predict(self, raw_features: Mapping[str, Any], signature: str = signatures.DEFAULT
              ) -> dict[str, np.ndarray]:
    """Scores a batch of raw features with one signature.

    Args:
      raw_features: `{key: values}` with a leading batch dimension (lists or numpy arrays;
        strings for string features). Keys beyond the model's inputs are ignored. A parsing
        export also takes a list of serialized Examples (or `{name: [bytes, ...]}` with the
        signature's input name, `inputs` or `examples`; `examples` works for every signature).
      signature: a name in `signatures`.

    Returns:
      `{output: numpy array [batch, ...]}`; string outputs are object arrays of bytes.

    Raises:
      ValueError / TypeError naming the feature for a missing feature, a wrong type or shape, or
      features of unequal lengths; ValueError for an unknown signature.
    """
    features, n = self.check(raw_features, signature)
    return self.run(features, n, signature)

  def check(self, raw_features: Mapping[str, Any], signature: str = signatures.DEFAULT
            ) -> tuple[dict[str, np.ndarray], int]:
    """The validated raw features of `predict` and their batch size (no model run)."""
    sig = self.signature(signature)
    serialized = self._serialized(raw_features, sig)
    if serialized is not None:
      raw_features = self.parse(serialized)
    return raw_lib.normalize(raw_features, self.inputs, host_parses=self._host is not None)

  def parse(self, serialized) -> dict[str, np.ndarray]:
    """Raw features of a batch of serialized Examples, parsed with the export's parse spec."""
    if self.parse_spec is None:
      raise ValueError(f'{self.path!r} takes raw features ({sorted(self.inputs)}), not serialized '
                       'Examples: export with serving_input_fn='
                       'jestimator.export.build_parsing_serving_input_fn(spec) to serve Examples')
    from jestimator.io import parsing
    return parsing.parse_example(serialized, self.parse_spec)

  def _request_inputs(self, method_name: str) -> dict[str, dict[str, Any]]:
    if self.parse_spec is None:
      return self.inputs
    key = EXAMPLES if method_name == signatures.PREDICT_METHOD else INPUTS
    return {key: {'dtype': si.STRING, 'shape': [], 'multivalent': False}}

  def _serialized(self, raw: Any, sig: Signature):
    """The serialized Examples of a request, or None for raw features."""
    if isinstance(raw, Mapping):
      names = {EXAMPLES} | (set(sig.inputs) if self.parse_spec is not None else set())
      key = next(iter(raw), None)
      if len(raw) != 1 or key not in names or key in self.inputs:
        return None
      raw = raw[key]
    elif not isinstance(raw, (list, tuple, np.ndarray)):
      return None
    if self.parse_spec is None and not (len(raw) and all(
        isinstance(r, (bytes, bytearray)) for r in raw)):
      return None  # not Examples either: the raw-feature checks say what is wrong
    return raw  # `parse` says so when this export takes no Examples

  def run(self, features: dict[str, np.ndarray], n: int, signature: str = signatures.DEFAULT
          ) -> dict[str, np.ndarray]:
    """`predict` on features already validated by `check` (the server batches them first)."""
    sig = self.signature(signature)
    device = self._device_features(features)
    parts = []
    for start in range(0, n, MAX_BATCH_BUCKET):  # bounded shapes: split, then pad each part
      rows = min(MAX_BATCH_BUCKET, n - start)
      part = device if rows == n else {k: v[start:start + rows] for k, v in device.items()}
      size = _bucket(rows)
      if size != rows:
        (part,), _ = plan_lib.pad_rows((part,), rows, size)
      self._compiled.setdefault(sig.name, set()).add(size)
      out = self._calls[sig.name](self._weights, part)
      parts.append({k: np.asarray(v)[:rows] for k, v in out.items()})
    out = parts[0] if len(parts) == 1 else {
        k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return signatures.finish(out, sig.string_outputs)

  def compiled_batch_sizes(self) -> dict[str, list[int]]:
    """`{signature: sorted batch sizes run so far}`: the programs compiled for this model.

    Powers of two up to `MAX_BATCH_BUCKET`, so at most 11 per signature whatever the requests.
    """
    return {name: sorted(sizes) for name, sizes in self._compiled.items()}

  def signature(self, name: str) -> Signature:
    """The `Signature` called `name`; ValueError listing the names when there is none."""
    sig = self.signatures.get(name)
    if sig is None:
      raise ValueError(f'no signature {name!r} in this export; it has {sorted(self.signatures)}')
    return sig

  def warmup(self, batch_sizes=(1,)) -> None:
    """Compiles every signature for the given batch sizes (their power-of-two buckets)."""
    for name in self.signatures:
      for b in batch_sizes:
        self.predict(si.example_batch(self.inputs, b), name)

  # -- internals ----------------------------------------------------------------------------------
  def _host_stage(self, doc, weights):
    host = doc.get('host_stage') or {}
    if not host.get('columns'):
      return None, {}
    from jestimator import columns as columns_lib
    from jestimator.serving import column_check
    with open(_inside(self.path, host['columns'], 'the columns file')) as f:
      cols_doc = _resolve_assets(json.load(f), self.path)
    cols = columns_lib.from_json(json.dumps(cols_doc))
    column_check.check(cols, weights, host.get('column_sizes'), repr(self.path))
    stage = Preprocessor(columns_lib.host_stage(cols))
    # Output keys carry a digest of each column's JSON, which changes where a vocabulary file now
    # lives elsewhere; the stage's outputs come in the same order, so map them back by position.
    new, old = list(stage.host_stage.output_keys), list(host.get('output_keys', ()))
    if len(new) != len(old):
      raise ValueError(f'{self.path!r}: the feature columns make {len(new)} host outputs here but '
                       f'made {len(old)} at export time; the export is damaged')
    return stage, {n: o for n, o in zip(new, old) if n != o}

  def _device_features(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if self._host is None:
      return device_inputs.align(features, self._device_inputs)
    out = self._host.features(features)
    if self._rename:
      out = {self._rename.get(k, k): v for k, v in out.items()}
    return device_inputs.align(out, self._device_inputs)


def _read_doc(path: str) -> dict:
  file = os.path.join(path, 'signature.json')
  if not os.path.isfile(file):
    hint = ''
    if os.path.isdir(path) and any(n.isdigit() and os.path.isfile(
        os.path.join(path, n, 'signature.json')) for n in os.listdir(path)):
      hint = ('; it holds exports (<timestamp>/ folders): load one of them, e.g. '
              'jestimator.export.load(jestimator.export.latest_export(path))')
    raise ValueError(f'{path!r} is not a jestimator export: it has no signature.json{hint}')
  try:
    with open(file) as f:
      doc = json.load(f)
  except ValueError as e:
    raise ValueError(f'{file} is not valid JSON ({e}); the export is damaged') from None
  if not isinstance(doc, dict) or doc.get('format') != FORMAT:
    raise ValueError(f'{path!r} is not a jestimator export: signature.json has format '
                     f'{doc.get("format") if isinstance(doc, dict) else None!r}, not {FORMAT!r}')
  version = doc.get('format_version')
  if not isinstance(version, int) or version > FORMAT_VERSION:
    raise ValueError(f'{path!r} has export format version {version!r}, newer than this '
                     f'jestimator reads ({FORMAT_VERSION}); upgrade jestimator to load it')
  return doc


def _check_platform(path: str, platforms: tuple[str, ...]) -> None:
  backend = jax.default_backend()
  names = ('cuda', 'rocm') if backend == 'gpu' else (backend,)
  if platforms and not set(names) & set(platforms):
    raise ValueError(f'{path!r} was exported for {list(platforms)} but this process runs on '
                     f'{backend}; export with platforms=({names[0]!r}, ...) to serve it here')


def _inside(root: str, relative: Any, what: str) -> str:
  """`root/relative`, refusing paths that leave the export (absolute, `..`, links out)."""
  if not isinstance(relative, str) or not relative or os.path.isabs(relative):
    raise ValueError(f'{root!r}: {what} {relative!r} is not a path inside the export; an export '
                     'reads only its own files')
  full = os.path.realpath(os.path.join(root, relative))
  if os.path.commonpath([full, os.path.realpath(root)]) != os.path.realpath(root):
    raise ValueError(f'{root!r}: {what} {relative!r} points outside the export; an export reads '
                     'only its own files')
  return full


def _resolve_assets(node, root: str):
  if isinstance(node, dict):
    node = {k: _resolve_assets(v, root) for k, v in node.items()}
    if node.get('column') == 'VocabularyFileCategoricalColumn':
      node['vocabulary_file'] = _inside(root, node['vocabulary_file'], 'vocabulary_file')
    return node
  if isinstance(node, list):
    return [_resolve_assets(v, root) for v in node]
  return node


def _bucket(n: int) -> int:
  """Batch size to compile for `n <= MAX_BATCH_BUCKET` rows: the next power of two."""
  return 1 << max(0, n - 1).bit_length()
