"""Writing an export: `export_estimator(est, base, ...)` -> `base/<timestamp>/`.

Layout of one export (format version `FORMAT_VERSION`):

  <timestamp>/
    signature.json              format, versions, raw inputs, device inputs, signatures, step,
                                the checkpoint (relative to the model_dir), column sizes
    variables.safetensors       the variables, named like 'params/Dense_0/kernel' (no pickle)
    functions/NN_<name>.jaxexport   one serialized `jax.export.Exported` per signature:
                                `f(variables, device_features) -> {output: array}`, batch symbolic
    columns.json                the feature columns (host stage), when the model has them
    assets/                     vocabulary files the columns read (copied in: an export never
                                points outside itself)
    assets.extra/               files given as `assets_extra` (TF's folder), when any
    manifest.json               SHA-256 of every other file, checked when the export is loaded

`signature.json`'s `parsing` holds the tf.Example parse spec of an export made with
`build_parsing_serving_input_fn` (null otherwise).

The directory is written under a temporary name in `export_dir_base` and renamed when complete, so
a reader never sees a partial export; earlier exports are kept. Its name is the current time in
seconds; when that folder exists already the export waits for the next second (up to 10 times), as
TF's `get_timestamped_export_dir`, so a version number never runs ahead of the clock.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jestimator.state import checkpoints as ckpt_lib
from jestimator.export import _device_inputs, _manifest, _tensors, signatures
from jestimator.export import serving_input as si
from jestimator.model.mode_keys import ModeKeys

logger = logging.getLogger('jestimator')

FORMAT = 'jestimator.export'
FORMAT_VERSION = 1
_PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
_MAX_DIRECTORY_ATTEMPTS = 10  # TF's MAX_DIRECTORY_CREATION_ATTEMPTS
ASSETS_EXTRA = 'assets.extra'


def check_exportable(est, serving_input_fn: Callable | None = None,
                     platforms: Sequence[str] | None = None,
                     assets_extra: Mapping[str, str] | None = None) -> None:
  """Raises the error `export_estimator` would raise before it needs a checkpoint.

  Checks the platforms, `assets_extra`, the raw input signature (calls `serving_input_fn`) and
  that the feature columns serialise (no Python callables); `train_and_evaluate` runs it for its
  exporters before the first training step.
  """
  _prepare(est, serving_input_fn, platforms, assets_extra)


def _prepare(est, serving_input_fn, platforms, assets_extra):
  platforms = _check_platforms(platforms)
  assets_extra = _check_assets_extra(assets_extra)
  host_stage = est.input_pipeline.host_stage
  raw_spec = _raw_spec(host_stage, serving_input_fn)
  columns_doc = _columns_json(host_stage) if est.feature_columns else None
  return platforms, assets_extra, host_stage, raw_spec, columns_doc


def export_estimator(est, export_dir_base: str, serving_input_fn: Callable | None = None,
                     checkpoint_path: str | None = None,
                     platforms: Sequence[str] | None = None,
                     assets_extra: Mapping[str, str] | None = None) -> str:
  """Writes an export of `est` at a checkpoint; see `Estimator.export_saved_model`."""
  if not isinstance(export_dir_base, (str, os.PathLike)) or not os.fspath(export_dir_base):
    raise ValueError(f'export_dir_base must be a directory path, got {export_dir_base!r}')
  export_dir_base = os.path.abspath(os.fspath(export_dir_base))
  platforms, assets_extra, host_stage, raw_spec, columns_doc = _prepare(
      est, serving_input_fn, platforms, assets_extra)
  checkpoint_path = _checkpoint(est, checkpoint_path)
  preprocess = est.input_pipeline.preprocessor.features

  probe_a = preprocess(si.example_batch(raw_spec, 2, 1))
  variables, step, _ = est.state_store.variables_for(probe_a, None, ModeKeys.PREDICT,
                                                     checkpoint_path)
  variables = jax.device_get(variables)
  model = est.compiled_model.model
  spec = est.compiled_model.traced(ModeKeys.PREDICT, variables, probe_a, None).spec
  outputs = dict(spec.export_outputs or {})
  if not outputs:
    raise ValueError('the model_fn returned no export_outputs in PREDICT mode: nothing to export')
  names, treedef = _flat_names(variables)
  flat = {n: np.asarray(v) for n, v in zip(names, jax.tree.leaves(variables))}
  weight_specs = {n: jax.ShapeDtypeStruct(a.shape, a.dtype) for n, a in flat.items()}

  # Most general first: variable widths for every list-like input; a model (or host stage) that
  # cannot take them gets fixed widths for the univalent features.
  levels = _device_inputs.widening_levels(raw_spec)
  for i, ragged in enumerate(levels):
    last = i == len(levels) - 1
    try:  # the host stage may refuse lists (numeric columns), or drop them (pass-through)
      probe_b = preprocess(si.example_batch(raw_spec, 3, 3, ragged))
      inputs_doc = _device_inputs.describe(probe_a, probe_b, 2, 3)
    except (TypeError, ValueError):
      if last:
        raise
      continue
    try:
      exported, sig_docs, platforms_done = _export_signatures(
          model, outputs, spec.string_outputs, names, treedef, weight_specs,
          _device_inputs.specs(inputs_doc), platforms)
      break
    except Exception as e:  # noqa: BLE001 - shape-polymorphism failures take many forms
      if last:
        raise
      logger.info('Export with variable widths for %s failed (%s: %s); retrying with fewer',
                  sorted(ragged), type(e).__name__, str(e).split('\n')[0])

  doc = {
      'format': FORMAT, 'format_version': FORMAT_VERSION,
      'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
      'jax_version': jax.__version__, 'platforms': platforms_done,
      'global_step': int(step), 'checkpoint': _relative_checkpoint(est, checkpoint_path),
      'inputs': raw_spec,
      'parsing': _parsing_doc(serving_input_fn),
      'host_stage': {'columns': 'columns.json' if columns_doc else None,
                     'output_keys': list(host_stage.output_keys if host_stage else ()),
                     'column_sizes': _column_sizes(host_stage) if columns_doc else {}},
      'device_inputs': inputs_doc,
      'signatures': sig_docs,
  }
  return _write_atomically(export_dir_base, doc, flat, exported, columns_doc, assets_extra)


# -- inputs ---------------------------------------------------------------------------------------
def _check_platforms(platforms) -> tuple[str, ...] | None:
  if platforms is None:
    return None
  if isinstance(platforms, str):
    platforms = (platforms,)
  platforms = tuple(platforms)
  bad = [p for p in platforms if p not in _PLATFORMS]
  if bad or not platforms:
    raise ValueError(f'platforms must be a non-empty subset of {_PLATFORMS}, got {platforms!r}')
  return platforms


def _check_assets_extra(assets_extra) -> dict[str, str]:
  """`{destination inside assets.extra/: source file}` (TF's `assets_extra`), checked."""
  if assets_extra is None:
    return {}
  if not isinstance(assets_extra, Mapping):
    raise TypeError('assets_extra must be a dict {destination path: source file}, got '
                    f'{type(assets_extra).__name__}')
  out = {}
  for dest, src in assets_extra.items():
    norm = os.path.normpath(dest) if isinstance(dest, str) and dest else ''
    if not norm or os.path.isabs(norm) or norm == '.' or norm.split(os.sep)[0] == '..':
      raise ValueError(f'assets_extra destination {dest!r} must be a relative path inside '
                       f'{ASSETS_EXTRA}/')
    if not isinstance(src, (str, os.PathLike)) or not os.path.isfile(src):
      raise ValueError(f'assets_extra[{dest!r}]: source {src!r} is not a file')
    out[norm] = os.path.abspath(os.fspath(src))
  return out


def _raw_spec(host_stage, serving_input_fn) -> dict[str, dict[str, Any]]:
  """The raw input spec: the serving_input_fn's, else the feature columns' (the host stage's)."""
  col_spec = {}
  if host_stage is not None and host_stage.raw_signature():
    col_spec = si.canonical_specs(host_stage.raw_signature(), 'feature columns')
  if serving_input_fn is None:
    if not col_spec:
      raise ValueError(
          'export needs the raw input signature: this model has no feature_columns, so pass '
          "serving_input_fn=jestimator.export.build_raw_serving_input_fn({'x': ('float32', [4])})")
    return col_spec
  spec = si.call_serving_input_fn(serving_input_fn)
  missing = sorted(set(col_spec) - set(spec))
  if missing:
    raise ValueError(f'serving_input_fn does not provide feature(s) {missing} that the feature '
                     f'columns read; it declares {sorted(spec)}')
  return spec


def _parsing_doc(serving_input_fn) -> dict | None:
  """The parse spec of a parsing serving input (`build_parsing_serving_input_fn`) as JSON."""
  spec = si.parse_spec_of(serving_input_fn)
  if spec is None:
    return None
  from jestimator.io import parsing
  return parsing.spec_to_json(spec)


def _checkpoint(est, checkpoint_path: str | None) -> str:
  if checkpoint_path is None:
    checkpoint_path = est.latest_checkpoint()
    if checkpoint_path is None:
      raise ValueError(f"Couldn't find trained model at {est.model_dir}: export needs a "
                       'checkpoint; train first or pass checkpoint_path')
    return checkpoint_path
  checkpoint_path = os.path.abspath(os.fspath(checkpoint_path))
  ckpt_lib.step_from_path(checkpoint_path)  # 'not a checkpoint path' error
  if not os.path.isdir(checkpoint_path):
    raise ValueError(f'checkpoint_path {checkpoint_path!r} does not exist')
  return checkpoint_path


def _relative_checkpoint(est, checkpoint_path: str) -> str:
  """The checkpoint relative to the model_dir (its folder name when outside it): an export
  records no path of the machine that wrote it. (Exports before this recorded an absolute
  `checkpoint_path`; nothing reads either key when loading.)"""
  model_dir = os.path.abspath(os.fspath(est.model_dir))
  path = os.path.abspath(checkpoint_path)
  if os.path.commonpath([path, model_dir]) == model_dir:
    return os.path.relpath(path, model_dir)
  return os.path.basename(path.rstrip(os.sep))


def _column_sizes(host_stage) -> dict[str, int]:
  from jestimator.export import _column_check  # deferred: it imports the feature columns
  return _column_check.column_sizes(host_stage.feature_columns)


def _columns_json(host_stage) -> dict:
  try:
    return json.loads(host_stage.to_json())
  except (TypeError, ValueError) as e:
    raise ValueError(f'cannot export the feature columns: {e}') from e


# -- the exported functions -----------------------------------------------------------------------
def _export_signatures(model, outputs, spec_strings, names, treedef, weight_specs, device_specs,
                       platforms):
  """`({file: serialized program}, {signature: doc}, platforms)` for every signature."""
  exported, sig_docs = {}, {}
  for i, name in enumerate(sorted(outputs)):
    fn = _serving_fn(model, name, names, treedef)
    exp = jax.export.export(jax.jit(fn), platforms=platforms)(weight_specs, device_specs)
    out_avals = jax.tree_util.tree_unflatten(exp.out_tree, exp.out_avals)
    for key, aval in out_avals.items():
      if not aval.shape or not _is_batch(aval.shape[0]):
        raise ValueError(f'export signature {name!r}: output {key!r} has shape {aval.shape}, '
                         'which lacks the leading batch dimension every output needs')
    strings = signatures.string_outputs(outputs[name], spec_strings, out_avals)
    out_doc = {k: {'dtype': np.dtype(a.dtype).name, 'shape': _dims(a.shape)}
               for k, a in sorted(out_avals.items())}
    for k in strings:
      out_doc[k] = {'dtype': si.STRING, 'shape': out_doc[strings[k]['ids_key']]['shape']}
    file = f'functions/{i:02d}_{re.sub(r"[^A-Za-z0-9_.-]", "_", name)}.jaxexport'
    exported[file] = exp.serialize()
    sig_docs[name] = {'method_name': signatures.method_name(outputs[name]), 'function': file,
                      'outputs': out_doc, 'string_outputs': strings}
  return exported, sig_docs, list(exp.platforms)


def _flat_names(variables) -> tuple[list[str], Any]:
  """Variable names ('params/Dense_0/kernel', in leaf order) and the tree structure."""
  names = list(ckpt_lib.flatten_with_names(variables))
  if len(names) != len(jax.tree.leaves(variables)):
    raise ValueError('variable names collide when joined with "/"; cannot export')
  return names, jax.tree.structure(variables)


def _serving_fn(model, signature: str, names: list[str], treedef) -> Callable:
  def serve(weights, features):
    variables = jax.tree_util.tree_unflatten(treedef, [weights[n] for n in names])
    batch = next(iter(features.values())).shape[0]
    spec, _ = model.apply(variables, features, None, ModeKeys.PREDICT,
                          mask=jnp.ones((batch,), jnp.float32))
    out = spec.export_outputs[signature].as_dict()
    return {k: jnp.asarray(v) for k, v in out.items()}
  return serve


def _is_batch(dim) -> bool:
  return not isinstance(dim, int) and str(dim) == 'b'


def _dims(shape) -> list[int]:
  """-1 for symbolic dimensions (TF's unknown size)."""
  return [d if isinstance(d, int) else -1 for d in shape]


# -- writing --------------------------------------------------------------------------------------
def _write_atomically(base: str, doc: dict, weights: dict, functions: dict,
                      columns_doc: dict | None, assets_extra: Mapping[str, str]) -> str:
  os.makedirs(base, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.tmp-export-', dir=base)
  try:
    os.makedirs(os.path.join(tmp, 'functions'))
    for file, blob in functions.items():
      with open(os.path.join(tmp, file), 'wb') as f:
        f.write(blob)
    _tensors.write(os.path.join(tmp, 'variables.safetensors'), weights,
                   {'format': FORMAT, 'global_step': doc['global_step']})
    if columns_doc is not None:
      columns_doc = _copy_assets(columns_doc, tmp)
      with open(os.path.join(tmp, 'columns.json'), 'w') as f:
        json.dump(columns_doc, f, indent=1)
    for dest, src in assets_extra.items():
      os.makedirs(os.path.dirname(os.path.join(tmp, ASSETS_EXTRA, dest)), exist_ok=True)
      shutil.copyfile(src, os.path.join(tmp, ASSETS_EXTRA, dest))
    # signature.json last: its presence marks a complete export even before the rename.
    with open(os.path.join(tmp, 'signature.json'), 'w') as f:
      json.dump(doc, f, indent=1)
    _manifest.write(tmp)  # over every file written above, so tampering shows at load
    final = _rename_to_timestamp(tmp, base)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logger.info('Exported model (global step %d) to %s', doc['global_step'], final)
  return final


def _rename_to_timestamp(tmp: str, base: str) -> str:
  """Renames `tmp` to `base/<now in seconds>`, waiting for the next second while that exists."""
  for _ in range(_MAX_DIRECTORY_ATTEMPTS):
    final = os.path.join(base, str(int(time.time())))
    if not os.path.exists(final):
      try:
        os.rename(tmp, final)
        return final
      except OSError:
        if not os.path.exists(final):  # not a concurrent export taking the name
          raise
    logger.warning('Export directory %s already exists; waiting for the next second', final)
    time.sleep(1.001 - time.time() % 1)  # to just past the next second
  raise RuntimeError(f'Failed to obtain a unique export directory name in {base} after '
                     f'{_MAX_DIRECTORY_ATTEMPTS} attempts')


def _copy_assets(doc, directory: str):
  """Copies vocabulary files into `assets/` and points the columns at the relative copies."""
  copies: dict[str, str] = {}  # one copy per file, so equal columns stay equal

  def walk(node):
    if isinstance(node, dict):
      node = {k: walk(v) for k, v in node.items()}
      if node.get('column') == 'VocabularyFileCategoricalColumn':
        src = os.path.abspath(node['vocabulary_file'])
        if src not in copies:
          os.makedirs(os.path.join(directory, 'assets'), exist_ok=True)
          copies[src] = f'assets/{len(copies):02d}_{os.path.basename(src)}'
          shutil.copyfile(src, os.path.join(directory, copies[src]))
        node['vocabulary_file'] = copies[src]
      return node
    if isinstance(node, list):
      return [walk(v) for v in node]
    return node
  return walk(doc)
