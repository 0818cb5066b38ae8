"""The host stage: raw features (strings allowed) -> a flat dict of numeric numpy arrays.

`host_stage(columns)` precomputes everything once (vocabulary tables, output keys, the raw-feature
signature); calling it on a batch runs vectorised numpy only. `transform_features(raw, columns)` is
the one-shot form. The output keys are described in `jestimator.columns.keys`; the Flax layers
(`DenseFeatures`, `LinearModel`, `SequenceFeatures`) consume exactly that dict.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import numpy as np

from jestimator.columns import _parse, base, categorical, crossed, embedding, hashing, keys
from jestimator.columns import numeric, sequence, serialization

_INT32_MAX = 2 ** 31 - 1


class _VocabTable:
  """Sorted keys (string fingerprints or ints) -> vocabulary ids, with the column's OOV policy."""

  def __init__(self, col, vocab: tuple, dtype: str):
    self.size = len(vocab)
    self.default = -1 if col.default_value is None else col.default_value
    self.oov = col.num_oov_buckets
    self.hashing = col.hashing
    self.is_string = dtype == 'string'
    # string values are looked up by the fingerprint the OOV buckets need, so one parse serves both
    self.kind = string_kind(col.hashing) if self.is_string else 'int64'
    if self.is_string:
      k = hashing.fingerprint_strings(np.array(vocab, dtype=str), col.hashing)
    else:
      k = np.array(vocab, dtype=np.int64)
    order = np.argsort(k, kind='stable')
    self.sorted = k[order]
    self.ids = order.astype(np.int32)
    if np.any(self.sorted[1:] == self.sorted[:-1]):
      raise ValueError(f'{col.describe()}: two vocabulary entries share a 64-bit fingerprint')

  def lookup(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(self.sorted, values)
    np.minimum(idx, self.size - 1, out=idx)
    found = self.sorted[idx] == values
    ids = self.ids[idx]
    miss = valid & ~found
    if self.oov:
      if miss.any():
        v = values[miss]
        fp = v if self.is_string else hashing.fingerprint_ints(v, self.hashing)
        ids[miss] = self.size + (fp % np.uint64(self.oov)).astype(np.int32)
    else:
      ids[miss] = self.default
    ids[~valid] = -1
    return ids


class _Ctx:
  """Per-batch caches, so a raw feature used by several columns is parsed and hashed once."""

  def __init__(self, raw: Mapping[str, Any], stage: HostStage):
    self.raw = raw
    self.stage = stage
    self.cache: dict[Any, Any] = {}
    self.batch: tuple[str, int] | None = None

  def memo(self, key, fn: Callable[[], Any]):
    if key not in self.cache:
      self.cache[key] = fn()
    return self.cache[key]

  def _check_batch(self, key: str, n: int):
    if self.batch is None:
      self.batch = (key, n)
    elif self.batch[1] != n:
      raise ValueError(f"feature '{key}' has batch size {n} but feature '{self.batch[0]}' has "
                       f'{self.batch[1]}; all features of a batch need the same leading dimension')

  def require(self, key: str, col: base.FeatureColumn) -> np.ndarray:
    """The raw feature `key` as an array (batch size checked); a clear error when it is absent."""
    if key not in self.raw:
      raise ValueError(f"feature '{key}' required by {col.describe()} is missing from the batch; "
                       f'the batch has keys {sorted(map(str, self.raw))}')
    def make():
      arr = _parse.to_array(key, self.raw[key])
      self._check_batch(key, arr.shape[0])
      return arr
    return self.memo(('array', key), make)

  def batch_size(self, col: base.FeatureColumn) -> int:
    if self.batch is None:
      for k in self.stage.raw_feature_keys:
        if k in self.raw:
          self.require(k, col)
          break
    if self.batch is None:
      raise ValueError(f'cannot tell the batch size for {col.describe()}: none of the features '
                       f'{list(self.stage.raw_feature_keys)} is in the batch (keys: '
                       f'{sorted(map(str, self.raw))})')
    return self.batch[1]

  def parsed(self, key: str, kind: str, col: base.FeatureColumn) -> _parse.Parsed:
    """`kind`: 'string' / 'string_legacy' (fingerprints: `string_kind`), 'int64' or 'float32'."""
    fn = _PARSERS[kind]
    return self.memo(('parsed', key, kind), lambda: _parse.parse_multi(
        key, self.require(key, col), col.describe(), fn))

  def numeric(self, col: numeric.NumericColumn) -> np.ndarray:
    def make():
      if col.key not in self.raw and col.default_value is not None:
        b = self.batch_size(col)
        return np.broadcast_to(np.asarray(col.default_value, np.float32).reshape(
            () if np.ndim(col.default_value) == 0 else col.shape), (b,) + col.shape).copy()
      return _parse.parse_numeric(col.key, self.require(col.key, col), col.shape,
                                  col.default_value, col.describe())
    return self.memo(('numeric', col.key, col.shape, col.default_value), make)

  def ids(self, col: base.CategoricalColumn) -> _parse.Parsed:
    """Ids of a host-id column, with the raw feature's validity and lengths."""
    return self.memo(('ids', col), lambda: self.stage._compute_ids(self, col))


_PARSERS = {'string': _parse.flat_strings,
            'string_legacy': functools.partial(_parse.flat_strings, hashing_fn='legacy'),
            'int64': _parse.flat_ints, 'float32': _parse.flat_floats}


def string_kind(hashing_fn: str) -> str:
  """The parse kind of string values fingerprinted with `hashing_fn` ('tf' or 'legacy')."""
  return 'string' if hashing_fn == 'tf' else 'string_legacy'


def _raw_kind(arr: np.ndarray) -> str:
  """'string' or 'int64': how a raw feature named directly in a crossed column is read."""
  if isinstance(arr, _parse.SparseInput):
    arr = arr.values
  if arr.dtype.kind in 'US':
    return 'string'
  if arr.dtype.kind != 'O':
    return 'int64'
  for x in arr.reshape(-1):
    items = x if isinstance(x, (list, tuple, np.ndarray)) else (x,)
    for y in items:
      if isinstance(y, (str, bytes)):
        return 'string'
      if y is not None and y == y:
        return 'int64'
  return 'string'


class HostStage:
  """The precompiled host stage of a set of feature columns.

  `stage(raw) -> dict[str, np.ndarray]` (see `jestimator.columns.keys` for the keys), every array
  numeric with the batch's leading dimension. `raw_feature_keys` lists the raw features it reads;
  `raw_signature()` describes them (for serving signatures); `to_json()` / `HostStage.from_json()`
  round-trip the columns.
  """

  def __init__(self, feature_columns):
    self.feature_columns = base.as_column_list(feature_columns, 'host_stage')
    self._ops: dict[str, tuple[Any, Callable[[_Ctx], np.ndarray]]] = {}
    self._tables: dict[base.FeatureColumn, _VocabTable] = {}
    self._signature: dict[str, dict[str, Any]] = {}
    self._weak: set[str] = set()
    self._vocab_digests: dict[str, str] = {}
    self._flat_ids: set[base.CategoricalColumn] = set()  # consumed outside a sequence column
    for col in self.feature_columns:
      self._register(col)

  # ----------------------------------------------------------------------------- registration
  def _add(self, key: str, spec: Any, fn: Callable[[_Ctx], np.ndarray], col):
    if key in self._ops and self._ops[key][0] != spec:
      raise ValueError(f"two columns write host output '{key}' differently: {col.describe()} "
                       f'({spec}) vs an earlier column ({self._ops[key][0]}); numeric columns '
                       'on one key must agree on shape and default_value')
    self._ops[key] = (spec, fn)

  def _need(self, key: str, dtype: str, shape, multivalent: bool, col, weak: bool = False):
    entry = {'dtype': dtype, 'shape': list(shape), 'multivalent': multivalent}
    old = self._signature.get(key)
    if old is None or (key in self._weak and not weak):
      self._signature[key] = entry
      (self._weak.add if weak else self._weak.discard)(key)
      return
    if weak or key in self._weak:
      return
    if (old['dtype'] == 'string') != (dtype == 'string'):
      raise ValueError(f"feature '{key}' is read as {dtype} by {col.describe()} but as "
                       f"{old['dtype']} by another column")
    old['multivalent'] = old['multivalent'] or multivalent

  def _register(self, col: base.FeatureColumn, in_sequence: bool = False):
    if isinstance(col, numeric.NumericColumn):
      if not col.is_analyzed:
        col.normalize(0.0)  # raises the 'run analyze' error
      self._need(col.key, col.dtype, col.shape, False, col)
      self._add(keys.value_key(col), ('numeric', col.shape, col.default_value),
                lambda ctx, c=col: ctx.numeric(c), col)
    elif isinstance(col, numeric.BucketizedColumn):
      col.boundaries_f32()  # raises the 'run analyze' error
      self._register(col.source_column)
    elif isinstance(col, keys.HOST_ID_COLUMNS):
      self._prepare_ids(col, in_sequence)
      self._add(keys.ids_key(col), col, lambda ctx, c=col: self._id_values(ctx, c), col)
    elif isinstance(col, categorical.WeightedCategoricalColumn):
      self._register(col.categorical_column)
      self._need(col.weight_feature_key, col.dtype, (), False, col)
      self._add(keys.weights_key(col), col, lambda ctx, c=col: self._weights(ctx, c), col)
    elif isinstance(col, sequence.SequenceCategoricalColumn):
      inner = col.categorical_column
      self._register(inner, in_sequence=True)
      self._add(keys.length_key(col), inner, lambda ctx, c=inner: ctx.ids(c).row_lengths(), col)
    elif isinstance(col, sequence.SequenceNumericColumn):
      self._need(col.key, col.dtype, col.shape, True, col)
      spec = ('sequence', col.shape, col.default_value)
      fn = functools.partial(self._sequence_numeric, col=col)
      self._add(keys.value_key(col), spec, lambda ctx, f=fn: f(ctx)[0], col)
      self._add(keys.length_key(col), spec, lambda ctx, f=fn: f(ctx)[1], col)
    elif isinstance(col, (embedding.EmbeddingColumn, embedding.SharedEmbeddingColumn,
                          embedding.IndicatorColumn)):
      self._register(col.categorical_column)
    else:
      raise base.ColumnTypeError(f'host_stage: unsupported column {col!r:.100}')

  def _prepare_ids(self, col: base.CategoricalColumn, in_sequence: bool):
    """Validates a host-id column, builds its vocabulary table and records its raw inputs."""
    if not in_sequence:
      self._flat_ids.add(col)
    if col.num_buckets > _INT32_MAX:
      raise ValueError(f'{col.describe()}: {col.num_buckets} buckets do not fit int32 ids')
    if isinstance(col, crossed.CrossedColumn):
      for k in col.keys:
        if isinstance(k, str):
          self._need(k, 'string', (), False, col, weak=True)
        elif isinstance(k, numeric.BucketizedColumn):
          k.boundaries_f32()
          self._need(k.source_column.key, k.source_column.dtype, k.source_column.shape, False, k)
        else:
          self._prepare_ids(k, False)
      return
    dtype = 'int64' if isinstance(col, categorical.IdentityCategoricalColumn) else col.dtype
    if isinstance(col, (categorical.VocabularyListCategoricalColumn,
                        categorical.VocabularyFileCategoricalColumn)) and col not in self._tables:
      vocab = col.vocabulary()  # raises 'run analyze' / file errors
      dtype = dtype or ('string' if isinstance(vocab[0], str) else 'int64')
      self._tables[col] = _VocabTable(col, vocab, dtype)
      self._vocab_digests[col.name] = _vocab_digest(col, vocab)
    self._need(col.key, dtype, (), in_sequence, col)

  # ----------------------------------------------------------------------------- computation
  def _id_values(self, ctx: _Ctx, col: base.CategoricalColumn) -> np.ndarray:
    ids = ctx.ids(col)
    if ids.values.ndim == 3 and col in self._flat_ids:
      # TF cannot reshape a rank-3 input of a non-sequence column either
      raise ValueError(f"{col.describe()}: feature '{col.key}' is a rank-3 sparse input "
                       '([batch, step, value]); only sequence columns '
                       '(sequence_categorical_column_*) take rank 3')
    return ids.values

  def _compute_ids(self, ctx: _Ctx, col: base.CategoricalColumn) -> _parse.Parsed:
    if isinstance(col, crossed.CrossedColumn):
      return self._cross(ctx, col)
    if isinstance(col, categorical.IdentityCategoricalColumn):
      p = ctx.parsed(col.key, 'int64', col)
      v, ok, n = p.values, p.valid, col.num_buckets
      if col.default_value is None:
        bad = ok & (v >= n)
        if bad.any():
          raise ValueError(f"{col.describe()}: feature '{col.key}' has id {v[bad][0]} outside the "
                           f'range [0, {n}) and the column has no default_value (ids >= '
                           'num_buckets are errors, negative ids are dropped; set default_value to '
                           'map out-of-range ids to a bucket)')
        ids = np.where(ok & (v >= 0), v, -1)
      else:
        ids = np.where(ok, np.where((v >= 0) & (v < n), v, col.default_value), -1)
      return _parse.Parsed(ids.astype(np.int32), ok, p.lengths, p.sparse)
    if isinstance(col, categorical.HashedCategoricalColumn):
      is_string = col.dtype == 'string'
      p = ctx.parsed(col.key, string_kind(col.hashing) if is_string else col.dtype, col)
      fp = p.values if is_string else hashing.fingerprint_ints(p.values, col.hashing)
      ids = (fp % np.uint64(col.hash_bucket_size)).astype(np.int32)
      ids[~p.valid] = -1
      return _parse.Parsed(ids, p.valid, p.lengths, p.sparse)
    table = self._tables[col]
    p = ctx.parsed(col.key, table.kind, col)
    return _parse.Parsed(table.lookup(p.values, p.valid), p.valid, p.lengths, p.sparse)

  def _cross_input(self, ctx: _Ctx, k,
                   col: crossed.CrossedColumn) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(k, str):
      is_string = _raw_kind(ctx.require(k, col)) == 'string'
      p = ctx.parsed(k, string_kind(col.hashing) if is_string else 'int64', col)
      if p.values.ndim != 2:
        raise ValueError(f"{col.describe()}: feature '{k}' is a rank-3 sparse input; crossed "
                         'columns take [batch] or [batch, n] values')
      v = p.values if is_string else hashing.as_uint64(p.values)
      if col.hashing == 'legacy':
        return v, p.valid
      return v, p.present(hashing.empty_fingerprint('tf'))
    if isinstance(k, numeric.BucketizedColumn):
      x = np.asarray(k.source_column.normalize(ctx.numeric(k.source_column)), np.float32)
      b = np.searchsorted(k.boundaries_f32(), x.reshape(x.shape[0], k.source_column.output_dim),
                          side='right')
      b = b + np.arange(b.shape[1]) * k.buckets_per_element
      return hashing.as_uint64(b), np.ones(b.shape, bool)
    ids = self._id_values(ctx, k)
    return hashing.as_uint64(ids), ids >= 0

  def _cross(self, ctx: _Ctx, col: crossed.CrossedColumn) -> _parse.Parsed:
    inputs = [self._cross_input(ctx, k, col) for k in col.keys]
    b, n = inputs[0][0].shape[0], len(inputs)
    vals, valid = [], np.ones((b,) + (1,) * n, bool)
    for i, (v, ok) in enumerate(inputs):  # input i varies along axis i + 1: Cartesian product
      shape = (b,) + (1,) * i + (v.shape[1],) + (1,) * (n - i - 1)
      vals.append(v.reshape(shape))
      valid = valid & ok.reshape(shape)
    h = hashing.cross_fingerprints(col.effective_hash_key, vals, col.hashing)
    width = int(np.prod(h.shape[1:]))
    ids = (h % np.uint64(col.hash_bucket_size)).astype(np.int32).reshape(b, width)
    valid = np.broadcast_to(valid, h.shape).reshape(b, width)
    ids[~valid] = -1
    return _parse.Parsed(ids, valid, None)

  def _weights(self, ctx: _Ctx, col: categorical.WeightedCategoricalColumn) -> np.ndarray:
    inner = col.categorical_column
    if isinstance(inner, numeric.BucketizedColumn):
      src = inner.source_column
      w = _parse.parse_numeric(col.weight_feature_key, ctx.require(col.weight_feature_key, col),
                               src.shape, 0.0, col.describe())
      return w.reshape(w.shape[0], src.output_dim)
    p = ctx.parsed(col.weight_feature_key, 'float32', col)
    ids = ctx.ids(inner)
    same = p.values.shape == ids.values.shape and (
        (p.lengths is None and ids.lengths is None) or
        (p.lengths is not None and ids.lengths is not None and np.array_equal(p.lengths,
                                                                              ids.lengths)))
    if same and p.sparse and ids.sparse and not np.array_equal(p.valid, ids.valid):
      raise ValueError(f"{col.describe()}: sparse weights '{col.weight_feature_key}' must have "
                       f"the same indices as the ids of {inner.describe()} (one weight per value)")
    if not same:
      raise ValueError(f"{col.describe()}: weights '{col.weight_feature_key}' must have the same "
                       f'structure as the ids (one weight per value); got weights of shape '
                       f'{p.values.shape} for ids of shape {ids.values.shape}' +
                       ('' if p.lengths is None or ids.lengths is None else
                        ' with different per-example lengths'))
    return p.values

  def _sequence_numeric(self, ctx: _Ctx, col: sequence.SequenceNumericColumn):
    return ctx.memo(('sequence', col.key, col.shape, col.default_value),
                    lambda: _parse.parse_sequence_numeric(
                        col.key, ctx.require(col.key, col), col.shape, col.default_value,
                        col.describe()))

  # ----------------------------------------------------------------------------- public API
  def __call__(self, raw_features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Transforms one batch of raw features; see the class docstring."""
    if not isinstance(raw_features, Mapping):
      raise base.ColumnTypeError(f'host stage: raw features must be a dict of arrays, got '
                                 f'{type(raw_features).__name__}')
    ctx = _Ctx(raw_features, self)
    return {k: fn(ctx) for k, (_, fn) in self._ops.items()}

  @property
  def raw_feature_keys(self) -> tuple[str, ...]:
    """Sorted keys of the raw features the columns read."""
    return tuple(sorted(self._signature))

  @property
  def output_keys(self) -> tuple[str, ...]:
    """Keys of the dict a call returns (see `jestimator.columns.keys`)."""
    return tuple(self._ops)

  def raw_signature(self) -> dict[str, dict[str, Any]]:
    """`{key: {'dtype': 'string'|'float32'|'int64'|..., 'shape': [...], 'multivalent': bool}}`.

    `shape` is per example (per timestep for sequence features, where `multivalent` is True).
    Categorical features are described in their univalent form (shape []) even though they also
    accept a list of values per example. A key named only in a crossed column defaults to 'string'.
    """
    return {k: dict(v, shape=list(v['shape'])) for k, v in sorted(self._signature.items())}

  def _hashing_columns(self) -> dict[str, str]:
    """`{name: hashing}` of the columns whose ids depend on the string hash."""
    return {c.name: c.hashing for c in base.walk(self.feature_columns)
            if isinstance(c, (categorical.HashedCategoricalColumn, crossed.CrossedColumn)) or
            (getattr(c, 'num_oov_buckets', 0) and hasattr(c, 'hashing'))}

  def checkpoint_record(self) -> dict[str, Any]:
    """What a checkpoint stores about this stage (JSON): the hash each hashing column uses, and a
    content digest of each vocabulary (entries in order, OOV buckets, default value)."""
    return {'hashing': self._hashing_columns(), 'vocabulary': dict(self._vocab_digests)}

  def check_checkpoint_record(self, record: Mapping[str, Any] | None, where: str) -> None:
    """Refuses to restore a checkpoint whose columns hashed otherwise (their buckets would move).

    `record`: what `checkpoint_record` saved, or None for a checkpoint written before records
    existed, whose hashing columns all used the legacy hash.
    """
    saved = {} if record is None else dict(record.get('hashing') or {})
    for name, now in self._hashing_columns().items():
      was = saved.get(name, 'legacy' if record is None else now)
      if was != now:
        why = (' (it was written before jestimator hashed like TF)' if record is None else '')
        raise ValueError(
            f"{where}: column '{name}' was trained with hashing={was!r}{why} but is now "
            f"hashing={now!r}, which would move its hash buckets; create it with "
            f"hashing={was!r} to use this checkpoint, or train in a new model_dir")
    self._check_vocabularies(None if record is None else record.get('vocabulary'), where)

  def _check_vocabularies(self, saved: Mapping[str, str] | None, where: str) -> None:
    """A vocabulary changed since the checkpoint (reordered, extended, cut, or the column is no
    longer a vocabulary) would silently give its ids other embedding rows and weights."""
    if saved is None:
      return  # written before vocabularies were recorded: nothing to compare with
    categorical_now = {c.name for c in base.walk(self.feature_columns)
                       if isinstance(c, base.CategoricalColumn)}
    for name, was in sorted(saved.items()):
      now = self._vocab_digests.get(name)
      if name not in categorical_now or now == was:
        continue
      what = ('has a different vocabulary (entries, their order, num_oov_buckets or '
              'default_value)' if now is not None else 'is no longer a vocabulary column')
      raise ValueError(
          f"{where}: column '{name}' {what} than the one the checkpoint was trained with, so "
          'its ids would select other rows of the trained weights. Use the vocabulary it was '
          'trained with; or, to reuse the weights with the new one knowingly, train in a new '
          'model_dir with warm_start_from= this model_dir')

  def to_json(self) -> str:
    """The columns as JSON (`jestimator.columns.to_json`)."""
    return serialization.to_json(self.feature_columns)

  @classmethod
  def from_json(cls, text: str) -> HostStage:
    """A host stage for the columns of a `to_json` string."""
    return cls(serialization.from_json(text))


def _vocab_digest(col, vocab) -> str:
  """sha256 of a vocabulary's entries in order plus its OOV policy (what maps values to ids)."""
  import hashlib
  import json
  doc = json.dumps({'vocabulary': [v if isinstance(v, str) else int(v) for v in vocab],
                    'num_oov_buckets': col.num_oov_buckets, 'default_value': col.default_value})
  return 'sha256:' + hashlib.sha256(doc.encode()).hexdigest()


def host_stage(feature_columns) -> HostStage:
  """Builds the host stage of `feature_columns` (vocabulary tables read and built once).

  Example: `stage = host_stage(cols); features = stage(raw_batch)`.
  """
  return HostStage(feature_columns)


@functools.lru_cache(maxsize=16)
def _cached_stage(cols: tuple[base.FeatureColumn, ...]) -> HostStage:
  return HostStage(cols)


def transform_features(raw_features: Mapping[str, Any], feature_columns) -> dict[str, np.ndarray]:
  """Runs the host stage of `feature_columns` on raw features.

  Stages are cached per column set (16 most recent); build one with `host_stage` to control its
  lifetime, e.g. to re-read a vocabulary file rewritten in place.

  Returns a flat dict of numeric numpy arrays with the batch's leading dimension (keys in
  `jestimator.columns.keys`), ready for `DenseFeatures`, `LinearModel` or `SequenceFeatures`.

  Example: `DenseFeatures(cols).init(key, transform_features({'age': [[30.]], ...}, cols))`.
  """
  cols = base.as_column_list(feature_columns, 'transform_features')
  return _cached_stage(cols)(raw_features)
