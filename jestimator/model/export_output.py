"""What a model returns for serving: the outputs of each export signature (TF's `ExportOutput`s)."""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping

import jax


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
    if self.scores is None and self.classes is None:
      raise ValueError('ClassificationOutput needs scores or classes (both are None)')

  def as_dict(self):
    return {k: v for k, v in (('classes', self.classes), ('scores', self.scores)) if v is not None}


@dataclasses.dataclass(frozen=True)
class RegressionOutput(ExportOutput):
  """One `[batch]` or `[batch, 1]` float output, under the name `outputs`."""
  value: jax.Array

  def as_dict(self):
    return {'outputs': self.value}


@dataclasses.dataclass(frozen=True)
class PredictOutput(ExportOutput):
  """Any dict of named arrays (or a single array, named `output`)."""
  outputs: Mapping[str, jax.Array] | jax.Array

  def as_dict(self):
    if isinstance(self.outputs, Mapping):
      return dict(self.outputs)
    return {'output': self.outputs}
