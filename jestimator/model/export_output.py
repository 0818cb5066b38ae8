"""What a model returns for serving: the outputs of each export signature (TF's `ExportOutput`s)."""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ExportOutput(abc.ABC):
  """Base class: a named group of output arrays for one serving signature."""

  @abc.abstractmethod
  def as_dict(self) -> dict[str, Any]:
    """The signature's outputs as `{name: array}`."""


@dataclasses.dataclass(frozen=True)
class ClassificationOutput(ExportOutput):
  """`scores` ([batch, n] floats) and `classes` ([batch, n]).

  JAX holds no strings, so `classes` is an integer id array; the host turns it into class-name bytes
  through `class_vocabulary` (or the decimal string of each id when it is None), as TF's outputs.
  """
  scores: jax.Array | None = None
  classes: jax.Array | None = None
  class_vocabulary: tuple[str, ...] | None = None

  def __post_init__(self):
    # TF's export_output.py: float scores, string classes (here: the integer ids they come from).
    if self.scores is not None and not _is_array(self.scores, jnp.floating):
      raise ValueError('Classification scores must be a float array; got '
                       f'{_describe(self.scores)}')
    if self.classes is not None and not _is_array(self.classes, jnp.integer):
      raise ValueError('Classification classes must be an integer array of class ids (named '
                       f'through class_vocabulary); got {_describe(self.classes)}')
    if self.scores is None and self.classes is None:
      raise ValueError('ClassificationOutput needs scores or classes (both are None)')
    if self.class_vocabulary is not None and not all(
        isinstance(w, str) for w in self.class_vocabulary):
      raise ValueError('ClassificationOutput.class_vocabulary must be a sequence of strings; got '
                       f'{self.class_vocabulary!r}')

  def as_dict(self):
    return {k: v for k, v in (('classes', self.classes), ('scores', self.scores)) if v is not None}


@dataclasses.dataclass(frozen=True)
class RegressionOutput(ExportOutput):
  """One `[batch]` or `[batch, 1]` float output, under the name `outputs`."""
  value: jax.Array

  def __post_init__(self):
    if not _is_array(self.value, jnp.floating):  # TF's export_output.py
      raise ValueError(f'Regression output value must be a float array; got {_describe(self.value)}')

  def as_dict(self):
    return {'outputs': self.value}


@dataclasses.dataclass(frozen=True)
class PredictOutput(ExportOutput):
  """Any dict of named arrays (or a single array, named `output`)."""
  outputs: Mapping[str, jax.Array] | jax.Array

  def __post_init__(self):
    # TF's export_output.py: string keys (tuples of strings joined with '/'), array values.
    outputs = self.outputs if isinstance(self.outputs, Mapping) else {'output': self.outputs}
    checked = {}
    for key, value in outputs.items():
      if isinstance(key, tuple) and all(isinstance(k, str) for k in key):
        key = '/'.join(key)
      if not isinstance(key, str):
        raise ValueError(f'Prediction output key must be a string; got {key!r}')
      if not _is_array(value):
        raise ValueError(f'Prediction output value must be an array; got {_describe(value)} '
                         f'under {key!r}')
      checked[key] = value
    if isinstance(self.outputs, Mapping):
      object.__setattr__(self, 'outputs', checked)

  def as_dict(self):
    if isinstance(self.outputs, Mapping):
      return dict(self.outputs)
    return {'output': self.outputs}


def _is_array(value: Any, kind=None) -> bool:
  """True for a JAX (or traced) or numpy array, of dtype `kind` (e.g. `jnp.floating`) if given."""
  if not isinstance(value, (jax.Array, np.ndarray)):
    return False
  return kind is None or jnp.issubdtype(value.dtype, kind)


def _describe(value: Any) -> str:
  if isinstance(value, (jax.Array, np.ndarray)):
    return f'an array of dtype {value.dtype}'
  return f'{type(value).__name__} {str(value)[:60]}'
