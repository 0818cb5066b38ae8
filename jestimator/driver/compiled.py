"""`CompiledModel`: a `ModelFn` with a strategy, its compiled programs and what tracing found.

One per Estimator. Each program (variable initialiser per mode, train step, `steps_per_loop`
loop, eval step, predict step) is built once and reused by every verb; specs are traced once per
mode and report padding-awareness explicitly (`TracedSpec.padding_aware`).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import jax
import numpy as np

from jestimator.model import steps as steps_lib
from jestimator.model import summary as summary_lib
from jestimator.model.mode_keys import ModeKeys
from jestimator.model.model_fn import ModelFn, TracedSpec
from jestimator.state import warm_start as warm_start_lib
from jestimator.state.train_state import TrainState

logger = logging.getLogger('jestimator')

#: Initialisers run once: XLA's backend optimisations would cost more compile time (about half
#: of it, for the census DNN on a CPU) than they could ever save at run time.
INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0}


def _init_jit(fn: Callable, out_shardings: Any = None) -> Callable:
  """`fn` jitted as an initialiser; with `out_shardings` (a sharded state) its outputs are
  created directly in them, each device computing only its own part."""
  if out_shardings is None:
    return jax.jit(fn, compiler_options=INIT_COMPILER_OPTIONS)
  return jax.jit(fn, compiler_options=INIT_COMPILER_OPTIONS, out_shardings=out_shardings)


class CompiledModel:
  """The model_fn's pure functions, compiled for one strategy, with their caches.

  Args:
    model: the `ModelFn`.
    strategy: the `Strategy` compiling the steps.
    seed: `RunConfig.random_seed`; one root key split into init and train keys.
  """

  def __init__(self, model: ModelFn, strategy: Any, seed: int):
    self.model = model
    self.strategy = strategy
    self.seed = seed
    self._programs: dict[Any, Callable] = {}
    self._traced: dict[str, TracedSpec] = {}
    self._zero_states: dict[tuple, Any] = {}
    self._ahead: set[tuple] = set()
    self._abstract_states: dict[tuple, TrainState] = {}
    #: How the switched train steps pack their summaries (`summary.Packing`).
    self.summary_packing = summary_lib.Packing()

  @property
  def takes_labels(self) -> bool:
    return self.model.takes_labels

  def _program(self, key: Any, build: Callable[[], Callable]) -> Callable:
    if key not in self._programs:
      self._programs[key] = build()
    return self._programs[key]

  # -- variables and train state -------------------------------------------------------------------
  def _keys(self) -> tuple[jax.Array, jax.Array]:
    """`(init key, train key)` from the seed; called inside the compiled programs, where the
    derivation folds into constants instead of running as eager ops."""
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(self.seed))
    return init_rng, train_rng

  def init_variables(self, features, labels, mode: str) -> Any:
    """Fresh variables for a batch, from the seed (one compiled program per mode)."""
    model = self.model
    init = self._program(('init', mode), lambda: _init_jit(
        lambda f, l: model.init(self._keys()[0], f, l, mode),
        self.strategy.state_shardings(self.abstract_variables(features, labels, mode))))
    return init(features, labels)

  def abstract_variables(self, features, labels, mode: str) -> Any:
    """The variables' shapes and dtypes (`ShapeDtypeStruct`s); computes nothing."""
    return jax.eval_shape(lambda: self.model.init(jax.random.PRNGKey(0), features, labels, mode))

  def traced(self, mode: str, variables, features, labels) -> TracedSpec:
    """The model_fn's spec in `mode` and its padding-awareness, traced once per mode.

    `variables` may be abstract (`ShapeDtypeStruct`s): tracing computes nothing.
    """
    if mode not in self._traced:
      self._traced[mode] = self.model.trace(variables, features, labels, mode)
    return self._traced[mode]

  def fresh_variables(self, features, labels, mode: str, warm_start: Any = None) -> Any:
    """Fresh variables initialised in `mode` (so PREDICT needs no labels), warm-started from
    `warm_start` settings if given."""
    variables = self.init_variables(features, labels, mode)
    if warm_start is not None:
      variables, names = warm_start_lib.warm_start(variables, warm_start)
      logger.info('Warm-started %d variables from %s', len(names),
                  warm_start.ckpt_to_initialize_from)
    return variables

  def create_train_state(self, features, labels, warm_start: Any = None) -> TrainState:
    """A fresh train state (variables warm-started from `warm_start` settings if given).

    Without warm start one compiled program derives the keys, initialises the variables and the
    optimizer state: no eager op-by-op work (each eager op would be a compilation of its own).
    """
    if warm_start is None:
      return self.state_program(features, labels)(features, labels)
    train = ModeKeys.TRAIN
    if train not in self._traced:
      self.traced(train, self.abstract_variables(features, labels, train), features, labels)
    spec = self._traced[train].spec
    variables = self.fresh_variables(features, labels, train, warm_start)
    create_from = self._program('create_from', lambda: _init_jit(
        lambda v: TrainState.create(v, spec.update_rule(), self._keys()[1]),
        self.strategy.state_shardings(self.abstract_train_state(features, labels))))
    return create_from(variables)

  def state_program(self, features, labels) -> Callable:
    """The compiled `(features, labels) -> TrainState` that creates a fresh state (no warm
    start) for batches like these: with a sharded strategy, straight into the state's shardings
    (each device computes only its own rows; random values as on one device). Unsharded, it is
    the very program whose trace `abstract_train_state` read (the initialiser traced once)."""
    def build():
      shardings = self.strategy.state_shardings(self.abstract_train_state(features, labels))
      if shardings is None:
        return self._unsharded_create()
      return _init_jit(self._create_fn(), shardings)
    return self._program('create_state', build)

  def _create_fn(self) -> Callable:
    """`(features, labels) -> fresh TrainState`: keys, variables and optimizer state."""
    model = self.model

    def create(f, l):
      init_rng, train_rng = self._keys()
      variables = model.init(init_rng, f, l, ModeKeys.TRAIN)
      spec = self.traced(ModeKeys.TRAIN, variables, f, l).spec  # abstract: computes nothing
      return TrainState.create(variables, spec.update_rule(), train_rng)

    return create

  def _unsharded_create(self) -> Callable:
    """`_create_fn` jitted without shardings: `abstract_train_state` reads its output shapes
    from its trace (`jit.eval_shape`) and an unsharded state is created by it, so the model_fn's
    initialiser is traced once for both (each trace of a canned model_fn is ~0.3 s of Python on
    a CPU)."""
    return self._program('create_unsharded', lambda: _init_jit(self._create_fn()))

  def abstract_train_state(self, features, labels) -> TrainState:
    """The train state's shapes and dtypes (restore targets, compile-ahead arguments); traced
    once per batch signature."""
    key = _signature((features, labels))
    if key not in self._abstract_states:
      self._abstract_states[key] = self._unsharded_create().eval_shape(features, labels)
    return self._abstract_states[key]

  # -- steps ----------------------------------------------------------------------------------------
  def train_step(self, with_outputs: bool = False) -> Callable:
    """Compiled `(state, features, labels) -> (state, outputs)`; `with_outputs`: the variant
    that also returns the summaries and hook tensors (see `steps.make_train_step`)."""
    return self._program(('train_step', with_outputs),
                         lambda: self.strategy.train_step(self.model, with_outputs=with_outputs))

  def switched_train_step(self) -> Callable | None:
    """Compiled `(state, features, labels, mask, want_outputs) -> (state, outputs)`: one program
    with the summaries under a runtime switch, or None where the strategy has none (see
    `Strategy.switched_train_step`)."""
    return self._program('switched_train_step',
                         lambda: self.strategy.switched_train_step(self.model,
                                                                   self.summary_packing))

  def gather_train_step(self, with_outputs: bool = False) -> Callable:
    """Compiled `(state, all_features, all_labels, rows, mask, seen[, want_outputs]) -> (state,
    outputs)`: the train step on rows of in-memory arrays kept on the device (single device;
    `with_outputs`: the summaries under a runtime switch; see `SingleDevice.gather_train_step`)."""
    packing = self.summary_packing if with_outputs else None
    return self._program(('gather_train_step', with_outputs),
                         lambda: self.strategy.gather_train_step(self.model, with_outputs,
                                                                 packing))

  def train_loop(self, with_outputs: bool = False) -> Callable:
    """Compiled `(state, features[K], labels[K]) -> (state, outputs)` (`steps_per_loop`)."""
    return self._program(('train_loop', with_outputs),
                         lambda: self.strategy.train_loop(self.model, with_outputs=with_outputs))

  def eval_step(self) -> Callable:
    """Compiled `(variables, acc, features, labels, mask) -> (acc, outputs)`."""
    return self._program('eval_step', lambda: self.strategy.eval_step(self.model))

  def predict_step(self, with_outputs: bool = False) -> Callable:
    """Compiled `(variables, features, mask) -> predictions`, or `(predictions, outputs)`."""
    return self._program(('predict_step', with_outputs),
                         lambda: self.strategy.predict_step(self.model, with_outputs=with_outputs))

  def compile_ahead(self, name: str, program: Callable, *abstract_args
                    ) -> threading.Thread | None:
    """Starts compiling `program` (the step called `name`, e.g. `self.train_step()`) for these
    abstract arguments (`ShapeDtypeStruct`s) in a background thread, once per signature.

    XLA compiles without holding the GIL, so this overlaps with the caller's own work (say the
    initialiser's compile). The executable reaches the step's first real call through JAX's
    persistent compilation cache; errors are left for that call to raise.
    """
    key = (name, _signature(abstract_args))
    if key in self._ahead:
      return None
    self._ahead.add(key)

    def compile_():
      try:
        program.lower(*abstract_args).compile()
      except Exception:  # noqa: BLE001 - the real call reports it with its own arguments
        logger.debug('compiling %s ahead failed', name, exc_info=True)

    thread = threading.Thread(target=compile_, name=f'jestimator-compile-{name}', daemon=True)
    thread.start()
    return thread

  def zero_metric_states(self, variables, features, labels, mask) -> Any:
    """Zero metric states for the eval step's output on these placed inputs (cached by shape)."""
    key = _signature((features, labels, mask))
    if key not in self._zero_states:
      step = self._program('eval_shape_step', lambda: steps_lib.make_eval_step(self.model))
      shapes = jax.eval_shape(step, variables, features, labels, mask)
      # Placed like the step's own output, so the second batch does not compile the step again.
      self._zero_states[key] = self.strategy.put_state(
          jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes))
    return self._zero_states[key]


def _signature(tree) -> tuple:
  return tuple((str(p), a.shape, str(a.dtype)) for p, a in
               jax.tree_util.tree_flatten_with_path(tree)[0])
