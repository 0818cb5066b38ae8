"""Raw batches to numeric ones: structure, numpy conversion, sizes, the host stage, string checks.

The second stage of the input pipeline (after `input_fn`): `prepare` turns one raw batch into
`(features, labels, size)` that may go to the device; padding is the plan's (`plan.pad_rows`)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline.host_stage import STRING_KINDS, Preprocessor, is_sparse


def split(item: Any, mode: str) -> tuple[Any, Any]:
  """`(features, labels)` from what an input iterator yielded."""
  if isinstance(item, tuple):
    if len(item) != 2:
      raise ValueError(f'input_fn must yield (features, labels) pairs, got a tuple of {len(item)}')
    return item
  return item, None


def to_numpy(features: Any, labels: Any) -> tuple[dict[str, np.ndarray], Any]:
  """Checks the structure of one raw batch and converts its leaves to numpy."""
  if not isinstance(features, Mapping):
    raise TypeError('input_fn must yield features as a dict {feature_key: array}, got '
                    f'{type(features).__name__}')
  features = {str(k): v if is_sparse(v) else as_array(v) for k, v in features.items()}
  if isinstance(labels, Mapping):
    labels = {str(k): as_array(v) for k, v in labels.items()}
  elif labels is not None:
    labels = as_array(labels)
  return features, labels


def as_array(v: Any) -> np.ndarray:
  """`v` as a numpy array; pandas via `to_numpy`, ragged lists as an object array of rows."""
  if isinstance(v, np.ndarray):
    return v
  if hasattr(v, 'to_numpy'):  # pandas
    return v.to_numpy()
  try:
    return np.asarray(v)
  except ValueError:  # ragged lists: keep as object array of rows for feature columns
    out = np.empty(len(v), dtype=object)
    out[:] = list(v)
    return out


def batch_size_of(features: Mapping[str, np.ndarray], labels: Any) -> int:
  """The common leading dimension, or a ValueError naming every array's size."""
  sizes = {f'features[{k!r}]': _leading(v) for k, v in features.items()}
  if isinstance(labels, Mapping):
    sizes.update({f'labels[{k!r}]': _leading(v) for k, v in labels.items()})
  elif labels is not None:
    sizes['labels'] = _leading(labels)
  if not sizes:
    raise ValueError('input_fn yielded an empty features dict')
  if len(set(sizes.values())) != 1:
    raise ValueError(f'arrays in one batch disagree on the batch size: {sizes}')
  return next(iter(sizes.values()))


def _leading(v) -> int:
  if is_sparse(v):
    return int(np.asarray(v.dense_shape).reshape(-1)[0])
  if np.ndim(v) == 0:
    raise ValueError('every feature and label needs a leading batch dimension; got a scalar')
  return len(v)


def check_numeric(features: Mapping[str, np.ndarray], labels: Any) -> None:
  """Strings cannot reach the device: say which feature holds them and what to do."""
  for k, v in features.items():
    if is_sparse(v):
      raise TypeError(f'feature {k!r} is a sparse value (indices, values, dense_shape), which only '
                      'feature columns read; declare feature columns (Estimator(..., '
                      'feature_columns=[...])) or densify it in the input_fn')
    if v.dtype.kind in STRING_KINDS:
      raise TypeError(
          f'feature {k!r} holds {v.dtype} values (strings or objects), which JAX cannot hold; '
          'declare feature columns (Estimator(..., feature_columns=[...])) to turn strings into '
          'ids on the host')
  for name, v in (labels.items() if isinstance(labels, Mapping) else [('labels', labels)]):
    if v is not None and v.dtype.kind in STRING_KINDS:
      raise TypeError(f'{name} hold strings ({v.dtype}); pass label_transform (e.g. a head\'s '
                      'labels_to_ids with label_vocabulary) to map them to ids')


def prepare(item: Any, mode: str, host_stage: Preprocessor, needs_labels: bool,
            takes_labels: bool = True) -> tuple[dict[str, np.ndarray], Any, int]:
  """One raw batch -> `(features, labels, batch_size)`, numeric and validated."""
  features, labels = split(item, mode)
  if mode == ModeKeys.PREDICT:
    labels = None
  if labels is not None and not takes_labels:
    raise ValueError('input_fn yields labels but model_fn takes no "labels" argument (as in TF, '
                     'this is an error: add labels to the model_fn or yield features only)')
  features, labels = to_numpy(features, labels)
  if needs_labels and labels is None:
    raise ValueError(f'labels are required in mode {mode!r}: input_fn yielded features only; '
                     'yield (features, labels)')
  size = batch_size_of(features, labels)
  features, labels = host_stage(features, labels)
  check_numeric(features, labels)
  return features, labels, size
