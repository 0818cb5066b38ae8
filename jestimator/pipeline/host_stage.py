"""The host stage: the protocol a raw -> numeric feature transform implements, and the core's use.

Feature columns (`jestimator.columns`) implement `HostStage`; the core never imports them. An
`Estimator(feature_columns=cols)` gets its host stage from the columns themselves (each column
object offers `build_host_stage(columns)`, see `ColumnsProtocol`), so the driver stays independent
of the columns package and any other library can plug in the same way.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

#: numpy dtype kinds the device cannot hold (bytes, str, object, and StringDType 'T').
STRING_KINDS = 'OSUT'


def is_sparse(v: Any) -> bool:
  """TF's sparse value (`indices`, `values`, `dense_shape`): kept whole for the host stage, whose
  feature columns read it (`jestimator.io.SparseTensorValue`)."""
  return all(hasattr(v, a) for a in ('indices', 'values', 'dense_shape'))


@runtime_checkable
class HostStage(Protocol):
  """Raw batch -> numeric batch, on the host (vectorised numpy).

  `stage(raw) -> {key: np.ndarray}`: `raw` maps feature names to arrays with a leading batch
  dimension (strings allowed); the result holds numbers only, keyed by `output_keys`.
  `raw_signature()` describes the raw inputs `{key: {'dtype', 'shape', 'multivalent'}}` (an
  export's inputs); `to_json()` serialises the stage so a served model can rebuild it.
  `checkpoint_record()` is JSON stored with every checkpoint, and
  `check_checkpoint_record(record, where)` raises a ValueError naming `where` when the stage
  cannot use a checkpoint that stored `record` (None: a checkpoint from before records existed).
  """

  def __call__(self, raw_features: Mapping[str, Any]) -> dict[str, np.ndarray]: ...

  @property
  def output_keys(self) -> tuple[str, ...]: ...

  def raw_signature(self) -> dict[str, dict[str, Any]]: ...

  def to_json(self) -> str: ...

  def checkpoint_record(self) -> Any: ...

  def check_checkpoint_record(self, record: Any, where: str) -> None: ...


@runtime_checkable
class ColumnsProtocol(Protocol):
  """A feature column: it can build the host stage of a list of columns it belongs to."""

  def build_host_stage(self, feature_columns: Sequence[Any]) -> HostStage: ...


class _NoColumns:
  """The host stage of `feature_columns=[]`: no column reads anything.

  Numeric raw features still pass through (see `Preprocessor`); strings stay on the host.
  """
  output_keys: tuple[str, ...] = ()

  def __call__(self, raw_features):
    return {}

  def raw_signature(self):
    return {}

  def to_json(self):
    return '[]'

  def checkpoint_record(self):
    return None

  def check_checkpoint_record(self, record, where):
    pass  # no column, nothing a checkpoint could disagree with


def from_feature_columns(feature_columns: Sequence[Any] | None) -> HostStage | None:
  """The host stage of `feature_columns` (None: no host stage), built by the columns themselves."""
  if feature_columns is None:
    return None
  feature_columns = list(feature_columns)
  if not feature_columns:
    return _NoColumns()
  bad = [c for c in feature_columns if not isinstance(c, ColumnsProtocol)]
  if bad:
    raise TypeError('feature_columns must be feature columns (jestimator.columns), got '
                    f'{type(bad[0]).__name__}: {bad[0]!r}')
  return feature_columns[0].build_host_stage(feature_columns)


class Preprocessor:
  """Raw batch -> numeric batch: the host stage, numeric pass-through, and the label transform.

  Args:
    host_stage: a `HostStage` (feature columns), or None to pass raw features through.
    label_transform: callable host labels -> numeric labels (e.g. a head's `labels_to_ids`, which
      maps string labels through a vocabulary and checks class ids), or None.
  """

  def __init__(self, host_stage: HostStage | None = None,
               label_transform: Callable | None = None):
    if host_stage is not None and not isinstance(host_stage, HostStage):
      raise TypeError(f'host_stage must implement jestimator.pipeline.host_stage.HostStage, got '
                      f'{type(host_stage).__name__}')
    self.host_stage = host_stage
    self.label_transform = label_transform

  def features(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if self.host_stage is None:
      return dict(features)
    out = self.host_stage(features)
    # Numeric features no column consumed (a weight column, an example id) pass through; unused
    # strings stay on the host.
    for k, v in features.items():
      if k not in out and not is_sparse(v) and v.dtype.kind not in STRING_KINDS:
        out[k] = v
    return out

  def labels(self, labels):
    if labels is None or self.label_transform is None:
      return labels
    return self.label_transform(labels)

  def __call__(self, features, labels):
    return self.features(features), self.labels(labels)
