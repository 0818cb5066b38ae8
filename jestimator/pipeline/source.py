"""`InputPipeline`: input_fn -> batches -> host stage -> plan -> placement, for every verb.

The loops get batches only from here. `open()` calls the input_fn (`input_fn.call_input_fn`),
iterates what it returned (resumed where a checkpoint left it), and turns each raw batch into a
validated numeric `HostBatch` (`batches.prepare`, which runs the host stage), in a background
thread for general input_fns (`prefetch`) or inline for in-memory ones, whose whole arrays went
through the host stage once. `place_batch()` pads as the verb's `BatchPlan` says and places;
`place_stacked()` (a `steps_per_loop` dispatch) and `resident()` (whole arrays gathered from on
the device) are the other two layouts. Nothing else sends batches to the device(s).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any, Callable, Iterator

import jax
import numpy as np

from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline import batches as batches_lib
from jestimator.pipeline import input_fn as input_fn_lib
from jestimator.pipeline.numpy_input import NumpyInputFn, ResumableIterator
from jestimator.pipeline.host_stage import Preprocessor
from jestimator.pipeline import plan as plan_lib
from jestimator.pipeline.plan import BatchPlan
from jestimator.pipeline.prefetch import Inline, Prefetcher

logger = logging.getLogger('jestimator')

#: In-memory training arrays up to this size (the default of `InputPipeline.resident_max_bytes`)
#: are kept on the device for a train() call and each batch is gathered there
#: (`InputPipeline.resident`); larger ones are sliced and sent per step.
RESIDENT_MAX_BYTES = 1 << 28


@dataclasses.dataclass
class HostBatch:
  """One validated numeric batch on the host.

  Attributes:
    features: `{key: np.ndarray [size, ...]}` after the host stage.
    labels: labels (array or dict), None in PREDICT or when the input yields none.
    size: the number of real rows.
    position: the input's `get_state()` after this batch (None when it cannot save one).
    rows: for an in-memory input (`InMemorySource`), the row numbers `[size]` of its arrays this
      batch holds; else None.
  """
  features: dict[str, np.ndarray] | None
  labels: Any
  size: int
  position: dict | None = None
  rows: np.ndarray | None = None


class BatchSource:
  """Iterator of `HostBatch`es of one input_fn call; `close()` stops its producer.

  `endless` is True when it repeats one batch forever (an input_fn that returned a single batch
  in TRAIN mode, which TF re-evaluated every step): only a step limit ends it.

  Attributes:
    batches_left: how many batches it yields, when known in advance (a finite in-memory input:
      progress ETA, the last summary), else None.
  """

  def __init__(self, produced: Prefetcher | Inline, endless: bool = False,
               batches_left: int | None = None):
    self._produced = produced
    self.endless = endless
    self.batches_left = batches_left

  @property
  def repeats_forever(self) -> bool:
    """True when the input is known to never end (an in-memory input with num_epochs=None)."""
    return False

  def epoch(self) -> tuple[int, int | None] | None:
    """`(epoch, num_epochs or None)` when the input knows its epochs (in memory), else None."""
    return None

  def __iter__(self) -> Iterator[HostBatch]:
    return self

  def __next__(self) -> HostBatch:
    (features, labels, size), position = next(self._produced)
    return HostBatch(features, labels, size, position)

  def first(self, what: str) -> HostBatch:
    """The first batch, or a ValueError naming the verb when the input is empty."""
    try:
      return next(self)
    except StopIteration:
      raise ValueError(f'input_fn yielded no batches for {what}') from None

  def close(self) -> None:
    self._produced.close()


class InMemorySource(BatchSource):
  """Batches of whole arrays held in memory (transformed and validated once), with their rows.

  Each `HostBatch` carries its `rows`; after `rows_only()` it carries nothing else (features and
  labels None), for a loop that keeps the whole arrays (`features`, `labels`) on the device and
  gathers each batch there. Positions are the iterator's either way.
  """

  def __init__(self, iterator: ResumableIterator, with_labels: bool):
    # Batches come from `__next__` below; the base only closes the (threadless) producer.
    super().__init__(Inline(iterator, None), batches_left=iterator.batches_left())
    self._iterator = iterator
    self.features, labels = iterator.arrays
    self.labels = labels if with_labels else None
    self._sliced = True

  @property
  def repeats_forever(self) -> bool:
    return self._iterator.batches_left() is None

  def epoch(self) -> tuple[int, int | None] | None:
    return self._iterator.epoch()

  def rows_only(self) -> None:
    """From the next batch on, batches carry `rows` only (no host slicing)."""
    self._sliced = False

  def __next__(self) -> HostBatch:
    rows = self._iterator.next_rows()
    position = self._iterator.get_state()
    if not self._sliced:
      return HostBatch(None, None, len(rows), position, rows)
    take = lambda a: a[rows]
    return HostBatch({k: take(v) for k, v in self.features.items()},
                     jax.tree.map(take, self.labels), len(rows), position, rows)


class InputPipeline:
  """Turns input_fns into batches placed for the compiled steps.

  Args:
    preprocessor: the host stage and label transform (`Preprocessor`).
    strategy: places batches (`put_batch`, `put_unsharded`) and gives the `InputContext`.
    takes_labels: whether the model_fn takes labels (an input yielding labels to a model_fn that
      takes none is an error, as in TF).
    params: the hyper-parameters passed to input_fns that name `params`.
    config: the `RunConfig`, passed to input_fns that name `config`.
    resident_max_bytes: the largest in-memory training input kept whole on the device
      (`resident`); also an attribute, which may be changed between verbs.
  """

  def __init__(self, preprocessor: Preprocessor, strategy: Any, takes_labels: bool,
               params: Any = None, config: Any = None,
               resident_max_bytes: int = RESIDENT_MAX_BYTES):
    self.preprocessor = preprocessor
    self.strategy = strategy
    self.takes_labels = takes_labels
    self.params = params
    self.config = config
    self.resident_max_bytes = resident_max_bytes
    # One transformed copy of the latest in-memory input per mode.
    self._in_memory: dict[str, tuple[Any, Any]] = {}

  @property
  def host_stage(self):
    """The feature columns' `HostStage`, or None."""
    return self.preprocessor.host_stage

  @property
  def batch_multiple(self) -> int:
    """Every batch placed must be a multiple of this many rows (the local device count)."""
    return self.strategy.batch_multiple

  # -- host side ----------------------------------------------------------------------------------
  def open(self, input_fn: Callable, mode: str, restore_position: dict | None = None
           ) -> BatchSource:
    """Calls `input_fn` and returns its validated numeric batches.

    `restore_position` (from a checkpoint) resumes a resumable input where training stopped.
    """
    needs_labels = mode != ModeKeys.PREDICT and self.takes_labels
    input_fn, in_memory = self._transformed(input_fn, mode, needs_labels)
    result = input_fn_lib.call_input_fn(input_fn, mode, self.params, self.config,
                                      self.strategy.input_context())
    if mode == ModeKeys.TRAIN and input_fn_lib.is_single_batch(result):
      # TF's input_fn returned tensors that every step evaluated again: the same batch each
      # step (until steps / max_steps). Validated and transformed once.
      batch = batches_lib.prepare(result, mode, self.preprocessor, needs_labels,
                                  self.takes_labels)
      return BatchSource(Inline(itertools.repeat(batch), lambda b: b), endless=True)
    iterator = input_fn_lib.iterate(result)
    if restore_position and isinstance(iterator, input_fn_lib.Resumable):
      input_fn_lib.resume(iterator, restore_position)

    if in_memory and isinstance(iterator, ResumableIterator):
      # Whole arrays were transformed and validated once: batches are ready slices, and slicing
      # costs less than a thread hand-off would.
      return InMemorySource(iterator, with_labels=mode != ModeKeys.PREDICT)

    def produce(item):
      return batches_lib.prepare(item, mode, self.preprocessor, needs_labels, self.takes_labels)

    return BatchSource(Prefetcher(iterator, produce))

  def _transformed(self, input_fn, mode: str, needs_labels: bool):
    """`(input_fn, whether its arrays are transformed and validated already)`.

    For the built-in in-memory inputs the host stage and the checks run once over the whole
    arrays, not once per batch. One transformed copy is kept per mode (the latest input_fn).
    """
    if not isinstance(input_fn, NumpyInputFn):
      return input_fn, False
    cached = self._in_memory.get(mode)
    if cached is None or cached[0] is not input_fn:
      if input_fn.num_examples == 0:
        return input_fn, False
      labels = None if mode == ModeKeys.PREDICT else input_fn.y
      features, labels, _ = batches_lib.prepare((input_fn.x, labels), mode, self.preprocessor,
                                                needs_labels, self.takes_labels)
      self._in_memory.pop(mode, None)  # free the previous copy before making the next
      cached = self._in_memory[mode] = (input_fn, input_fn.with_arrays(features, labels))
    return cached[1], True

  # -- placement: the one place batches go to the device -----------------------------------------
  def place_batch(self, batch: HostBatch, plan: BatchPlan) -> tuple[Any, Any, Any]:
    """`(features, labels, mask)` placed as `plan` says: padded from `batch.size` to
    `plan.rows(batch.size)` rows, the mask 1.0 for real rows and 0.0 for padding (None for a plan
    without a mask). When padding would dilute the loss of a model_fn that ignores the mask, the
    batch runs whole on every device if the strategy can.
    """
    if not plan.masked:
      return self._place(batch.features), self._place(batch.labels), None
    n = batch.size
    pad_to = plan.rows(n)
    if pad_to != n and not plan.mask_aware:
      whole = self.strategy.put_unsharded((batch.features, batch.labels, np.ones(n, np.float32)))
      if whole is not None:
        return whole
    (features, labels), mask = plan_lib.pad_rows((batch.features, batch.labels), n, pad_to)
    return self._place(features), self._place(labels), self._place(mask)

  def place_stacked(self, group: list[HostBatch]) -> tuple[Any, Any]:
    """K batches of one shape as one `[K, batch, ...]` stack (a `steps_per_loop` dispatch)."""
    features = jax.tree.map(lambda *a: np.stack(a), *[b.features for b in group])
    labels = jax.tree.map(lambda *a: np.stack(a), *[b.labels for b in group])
    return self._place(features, stacked=True), self._place(labels, stacked=True)

  def resident(self, source: BatchSource) -> 'ResidentArrays | None':
    """The whole arrays of an in-memory source, to keep on the device for a loop that gathers
    each batch's rows there instead of slicing and sending every feature per step; None when
    `source` is not in memory or its arrays exceed `resident_max_bytes`."""
    if not isinstance(source, InMemorySource):
      return None
    arrays = (source.features, source.labels)
    if sum(a.nbytes for a in jax.tree.leaves(arrays)) > self.resident_max_bytes:
      return None
    return ResidentArrays(source, self.strategy)

  def _place(self, tree: Any, stacked: bool = False) -> Any:
    """Places a host pytree with a leading batch axis (`stacked`: `[K, batch, ...]`)."""
    return self.strategy.put_batch(tree, stacked=stacked)


class ResidentArrays:
  """An in-memory source's whole `(features, labels)`, kept on the device (single-device
  strategies) for one `train()` call: `place()` puts them there once, after which the source's
  batches carry only their row numbers, and `rows_and_mask` gives what each step gathers."""

  def __init__(self, source: InMemorySource, strategy: Any):
    self.host = (source.features, source.labels)
    self._source, self._strategy = source, strategy

  def place(self) -> tuple[Any, Any]:
    """The placed `(features, labels)`; from now on the source's batches carry rows only."""
    placed = self._strategy.put_state(self.host)
    self._source.rows_only()
    return placed

  @staticmethod
  def rows_and_mask(batch: HostBatch, plan: BatchPlan) -> tuple[np.ndarray, np.ndarray]:
    """`(rows, mask)` on the host of a rows-only batch, padded as `place_batch` pads (repeating
    the first row, mask 0.0 on padding); rows as int32 for the on-device gather."""
    return plan_lib.pad_rows(batch.rows.astype(np.int32), batch.size, plan.rows(batch.size))
