"""The train step program: chosen once per `train()` from the strategy, what tracing found, the
first batch and `steps_per_loop`; the only thing the train loop calls to run steps. It compiles
ahead from abstract arguments, places its own inputs and runs one group of batches per call.

- `GatherProgram`: an in-memory input on one device, one step per dispatch, short batches padded:
  the whole arrays stay on the device for the `train()` and each step gathers its rows there (only
  row numbers and a mask are sent per step); it carries a sticky non-finite flag, so the NaN check
  reads one flag instead of one per step.
- `StepProgram`: one batch per dispatch, padded as the `BatchPlan` says (or unpadded, no mask).
- `LoopProgram`: `steps_per_loop` batches of one shape per dispatch, as one stacked program (a
  shorter group repeats its last batch and trains on its first `len(group)` only); a batch of
  another size (the short final one) runs through the `StepProgram`.

Each returns the train step's outputs with empty summaries filled in for a model_fn that has none.
"""
from __future__ import annotations

import threading
from typing import Any

import jax
import numpy as np

from jestimator.driver import hooks as hooks_lib
from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline.plan import BatchPlan

# Step outputs the lean (default) train step returns; asking for others runs the full variant.
LEAN_OUTPUTS = frozenset({'loss', 'losses', 'nonfinite', 'update_losses'})
# What a model_fn without summaries or hook tensors produces for them.
_NO_SUMMARIES = {'scalars': {}, 'histograms': {}, 'tensors': {}}
# The `want_outputs` argument of the switched programs (0-d arrays: a jit argument, not static).
_WANT = {False: np.asarray(False), True: np.asarray(True)}
_WANT_SPEC = jax.ShapeDtypeStruct((), np.bool_)


def choose(compiled, pipeline, steps_per_loop: int, source, first, agreement) -> 'TrainProgram':
  """The program of one `train()`, from its first batch (before the state exists).

  Args:
    compiled: the `CompiledModel`.
    pipeline: the `InputPipeline` (placement).
    steps_per_loop: `RunConfig.steps_per_loop`.
    source: the `BatchSource` (an in-memory one may stay on the device).
    first: its first `HostBatch`.
    agreement: the run's `Agreement` (on-device gathering and compiling ahead: one process).
  """
  strategy = compiled.strategy
  abstract = compiled.abstract_train_state(first.features, first.labels)
  traced = compiled.traced(ModeKeys.TRAIN, abstract.variables, first.features, first.labels)
  plan = BatchPlan.for_train(first.size, strategy.pads_train_batches, traced.padding_aware,
                             bool(abstract.collections))
  # Abstract arguments lower exactly as placed ones only on one device (elsewhere a mismatch
  # would cost a second compile), and the gathering step is a single-device program.
  local = strategy.one_device and agreement.single
  if local and plan.pad and steps_per_loop == 1:
    resident = pipeline.resident(source)
    if resident is not None:
      return GatherProgram(compiled, pipeline, plan, traced, abstract, first, resident)
  step = StepProgram(compiled, pipeline, plan, traced, abstract if local else None, first)
  if steps_per_loop == 1:
    return step
  return LoopProgram(step, steps_per_loop)


class TrainProgram:
  """The interface the train loop calls.

  Attributes:
    nonfinite_seen: the sticky non-finite flag of the programs that carry one (else None), for
      `NanCheck.add`.
  """
  nonfinite_seen: Any = None

  def __init__(self, compiled, pipeline, plan: BatchPlan, traced, abstract, first):
    self.compiled = compiled
    self.pipeline = pipeline
    self.plan = plan
    self.traced = traced
    self._abstract = abstract  # the abstract train state, when compiling ahead (else None)
    self._first = first
    self._dispatches = 0

  def compile_ahead(self) -> threading.Thread | None:
    """Starts compiling the first dispatch's program in a thread (while the state is created or
    restored), or returns None where it cannot; the first `run` then finds it compiled."""
    return None

  def run(self, state, group: list, wanted) -> tuple[Any, dict]:
    """Runs the steps of `group` (consecutive batches of one shape) from `state`.

    `wanted`: the step outputs hooks asked for; the variant with summaries and hook tensors runs
    only when they ask for more than the lean outputs and the model_fn has any (else it would be
    the same program compiled twice). Returns `(state, outputs)`.
    """
    full = self.traced.has_outputs and bool(set(wanted) - LEAN_OUTPUTS)
    state, outputs = self._dispatch(state, group, full)
    self._dispatches += 1
    if not self.traced.has_outputs:
      outputs = dict(outputs, **{hooks_lib.SUMMARIES: _NO_SUMMARIES})
    elif 'packed' in outputs.get(hooks_lib.SUMMARIES, {}):
      # A switched step's summaries, one vector: fetched (the hooks that asked for them would
      # fetch them next anyway) and unpacked only when computed; zeros are not worth a fetch.
      summaries = outputs[hooks_lib.SUMMARIES]
      unpacked = (self.compiled.summary_packing.unpack(
          self.compiled.strategy.to_host(summaries['packed'])) if full else
          {'scalars': {}, 'histograms': {}})
      outputs = dict(outputs, **{hooks_lib.SUMMARIES: {**unpacked,
                                                       'tensors': summaries['tensors']}})
    return state, outputs

  def sync_due(self, outputs) -> bool:
    """Blocks on the device every `Strategy.sync_every` dispatches (multi-device CPU collectives
    deadlock when too many are in flight); True when it did."""
    every = self.compiled.strategy.sync_every
    if every and self._dispatches % every == 0:
      jax.block_until_ready(outputs['loss'])
      return True
    return False

  def _dispatch(self, state, group: list, full: bool) -> tuple[Any, dict]:
    raise NotImplementedError

  def _placed(self, tree):
    """Abstract values (of arrays or abstract arrays) placed as the state is (one device)."""
    return self.compiled.strategy.abstract(tree)


def _spec(tree, lead: tuple = ()):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(lead + np.shape(a), np.asarray(a).dtype),
                      tree)


class StepProgram(TrainProgram):
  """One batch per dispatch through the train step, padded to the plan's size (or unpadded).

  A model_fn with summaries runs the strategy's switched step where it has one: the summaries
  are computed under a runtime condition, so the steps that write them need no second program.
  """

  def __init__(self, *args):
    super().__init__(*args)
    self._switched = (self.compiled.switched_train_step() if self.traced.has_outputs else None)

  def compile_ahead(self) -> threading.Thread | None:
    if self._abstract is None:
      return None
    args = (_spec(self._first.features), _spec(self._first.labels))
    mask = jax.ShapeDtypeStruct((self.plan.size,), np.float32) if self.plan.masked else None
    if self._switched is not None:
      return self.compiled.compile_ahead('train_step', self._switched,
                                         self._placed(self._abstract), *args, mask, _WANT_SPEC)
    if mask is not None:
      args += (mask,)
    return self.compiled.compile_ahead('train_step', self.compiled.train_step(),
                                       self._placed(self._abstract), *args)

  def _dispatch(self, state, group, full):
    (batch,) = group
    features, labels, mask = self.pipeline.place_batch(batch, self.plan)
    if self._switched is not None:
      return self._switched(state, features, labels, mask, _WANT[full])
    args = (features, labels) if mask is None else (features, labels, mask)
    return self.compiled.train_step(full)(state, *args)


class GatherProgram(TrainProgram):
  """In-memory arrays kept on the device for the `train()`; each step gathers its rows there."""

  def __init__(self, compiled, pipeline, plan, traced, abstract, first, resident):
    super().__init__(compiled, pipeline, plan, traced, abstract, first)
    self._resident = resident
    self._arrays = None

  def compile_ahead(self) -> threading.Thread | None:
    size = self.plan.size
    # A model_fn with summaries: one program, its summaries under a runtime switch.
    switched = self.traced.has_outputs
    want = (_WANT_SPEC,) if switched else ()
    return self.compiled.compile_ahead(
        'gather_train_step', self.compiled.gather_train_step(switched),
        self._placed(self._abstract), *self._placed(self._resident.host),
        jax.ShapeDtypeStruct((size,), np.int32), jax.ShapeDtypeStruct((size,), np.float32),
        self._placed(np.False_), *want)

  def _dispatch(self, state, group, full):
    if self._arrays is None:  # placed at the first step: the state exists by then
      self._arrays = self._resident.place()
      self.nonfinite_seen = self.compiled.strategy.put_state(np.False_)
    (batch,) = group
    rows, mask = self._resident.rows_and_mask(batch, self.plan)
    want = (_WANT[full],) if self.traced.has_outputs else ()
    state, outputs = self.compiled.gather_train_step(self.traced.has_outputs)(
        state, *self._arrays, rows, mask, self.nonfinite_seen, *want)
    self.nonfinite_seen = outputs['nonfinite_seen']
    return state, outputs


class LoopProgram(TrainProgram):
  """`steps_per_loop` batches per dispatch as one stacked loop program."""

  def __init__(self, step: StepProgram, steps_per_loop: int):
    super().__init__(step.compiled, step.pipeline, step.plan, step.traced, step._abstract,
                     step._first)
    self._step = step
    self._per_loop = steps_per_loop

  def compile_ahead(self) -> threading.Thread | None:
    if self._abstract is None:
      return None
    k = self._per_loop
    return self.compiled.compile_ahead('train_loop', self.compiled.train_loop(),
                                       self._placed(self._abstract),
                                       _spec(self._first.features, (k,)),
                                       _spec(self._first.labels, (k,)),
                                       jax.ShapeDtypeStruct((), np.int32))

  def _dispatch(self, state, group, full):
    if len(group) == 1 and group[0].size != self.plan.size:
      return self._step._dispatch(state, group, full)
    # Always a stack of steps_per_loop batches (the last repeated): one loop program runs any
    # shorter group, training on its first len(group) batches only.
    stack = group + [group[-1]] * (self._per_loop - len(group))
    return self.compiled.train_loop(full)(state, *self.pipeline.place_stacked(stack),
                                          np.int32(len(group)))
