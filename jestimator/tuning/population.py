"""Population mode: N trials that differ only in optimizer hyperparameters and seeds, trained as
one `vmap`ped program on one device.

Why it works: with `optax.inject_hyperparams`, an optimizer's numeric hyperparameters (learning
rate, weight decay, momentum, ...) live in its *state*, not in the compiled program. Members that
differ only there and in their seed (which only changes the initial variables and the dropout
key, both part of the train state) run the same program on different states, so the population
is `jax.vmap(train_step)` over a train state with a leading member axis `[N, ...]`, every member
fed the same batch. One trace, one compile, one dispatch per step for all N members.

- Each member's numbers are those of training it alone (`Population.member_estimator(i)`): the
  state is created as the Estimator creates it (`RunConfig(seed)` -> one root key split into the
  init and train keys), batches come from the template Estimator's own input pipeline (host
  stage, padding of the short final batch with its mask), and the step is the Estimator's
  `make_train_step`. Only XLA's batched kernels differ, so results agree to float rounding.
- Pruning is a mask: a pruned member's update is discarded inside the program
  (`where(active, new, old)`), so its parameters and global step freeze and the compiled shape
  never changes (no recompilation as members drop out; the price is that a pruned member still
  costs its share of each step). A member whose loss turns NaN/inf is frozen the same way, at its
  last finite state, and reported as failed instead of stopping the population.
- Each member can be saved as a normal Estimator `model_dir` (`base_dir/member_<i>`, Orbax
  checkpoint written through that member's own Estimator, plus `member.json`), so the best member
  is evaluated, predicted and exported like any trained Estimator.

What is refused (loudly, before training): a strategy other than one device, warm starting, a
member key that is neither `seed` nor a numeric hyperparameter injected in the optimizer state
(a plain `optax.adam(lr)` keeps the rate in the program: it cannot vary), a scheduled injected
hyperparameter (the schedule rewrites it every step), and a name injected in several places.
`jestimator.tuning.population_study` connects a population to Optuna trials.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jestimator.driver import summaries as summaries_lib
from jestimator.driver.compiled import INIT_COMPILER_OPTIONS
from jestimator.driver.estimator import Estimator
from jestimator.model import steps as steps_lib
from jestimator.model.mode_keys import ModeKeys
from jestimator.pipeline.plan import BatchPlan
from jestimator.state import checkpoints
from jestimator.state.train_state import TrainState
from jestimator.tuning.population_eval import PopulationEvaluator

logger = logging.getLogger('jestimator')

SEED = 'seed'
MEMBER_FILE = 'member.json'
_INJECTED = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)

PopulationBuildFn = Callable[[Mapping[str, Any], str], Estimator]
#: `on_evaluation(step, {member: eval results}) -> members to prune` (indices; None: none).
OnEvaluation = Callable[[int, dict[int, dict[str, Any]]], Any]


@dataclasses.dataclass
class MemberResult:
  """What one member did.

  Attributes:
    index: its position in `members`.
    hparams: its hyperparameters (as given).
    evaluations: `[(global_step, eval results)]`, one per evaluation while it was active.
    status: 'complete', 'pruned' or 'nonfinite' (its loss turned NaN/inf: frozen before it).
    global_step: the step its state stopped at (the last step for complete members).
    train_loss: its training loss at its last step (NaN when none was finite).
    model_dir: its saved model_dir, or None when not saved.
  """
  index: int
  hparams: dict[str, Any]
  evaluations: list[tuple[int, dict[str, Any]]]
  status: str
  global_step: int
  train_loss: float
  model_dir: str | None = None

  @property
  def final(self) -> dict[str, Any] | None:
    """The last evaluation's results (None when it was never evaluated)."""
    return self.evaluations[-1][1] if self.evaluations else None


def _injected_nodes(opt_state) -> list[tuple[str, Any]]:
  """`[(path, InjectHyperparamsState)]` in an optimizer state."""
  flat = jax.tree_util.tree_flatten_with_path(opt_state,
                                              is_leaf=lambda x: isinstance(x, _INJECTED))[0]
  return [(jax.tree_util.keystr(p), x) for p, x in flat if isinstance(x, _INJECTED)]


def _check_members(members: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  if isinstance(members, Mapping) or not isinstance(members, Sequence) or not members:
    raise TypeError(f'members must be a non-empty list of dicts of hyperparameters, got '
                    f'{type(members).__name__}')
  out = [dict(m) for m in members]
  keys = set(out[0])
  for i, m in enumerate(out):
    if set(m) != keys:
      raise ValueError(f'members[{i}] has keys {sorted(m)}, members[0] has {sorted(keys)}: every '
                       'member must set the same hyperparameters')
    seed = m.get(SEED, 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
        0 <= seed < 2**31):
      raise ValueError(f'members[{i}][{SEED!r}] must be an int in [0, 2**31), got {seed!r}')
  return out


class Population:
  """Members differing only in injected optimizer hyperparameters and seeds, trained as one.

  Args:
    build: `build(hparams, model_dir) -> Estimator`, the Estimator a member would train alone
      (a canned estimator or `Estimator(model_fn)`) built with `hparams` in `model_dir`. Its
      optimizer must take the varying hyperparameters through `optax.inject_hyperparams`, e.g.
      `optax.inject_hyperparams(optax.adam)(learning_rate=hparams['learning_rate'])`, and use
      them nowhere else. `hparams[SEED]`, when members set it, must become `RunConfig(seed=...)`.
    members: one dict per member, all with the same keys: names of injected hyperparameters and
      optionally 'seed'.
    base_dir: where members are saved (`base_dir/member_<i>`); None: a temporary folder.
    model_dirs: the members' folders instead (one per member; `population_study` passes the
      trials' `base_dir/trial_<number>`).

  Example:
    def build(hp, model_dir):
      opt = optax.inject_hyperparams(optax.adam)(learning_rate=hp['learning_rate'])
      return je.DNNClassifier([64, 32], cols, model_dir=model_dir, optimizer=opt,
                              config=je.RunConfig(seed=hp['seed']))
    pop = tuning.Population(build, [{'learning_rate': lr, 'seed': 0} for lr in (1e-3, 1e-2)])
    results = pop.train(train_fn, eval_input_fn=eval_fn, every_n_steps=100)
    best = min(results, key=lambda r: r.final['loss'])
    est = pop.member_estimator(best.index)   # reads the saved member: evaluate / export it
  """

  def __init__(self, build: PopulationBuildFn, members: Sequence[Mapping[str, Any]],
               base_dir: str | None = None, model_dirs: Sequence[str] | None = None):
    if not callable(build):
      raise TypeError(f'build must be callable (hparams, model_dir) -> Estimator, got '
                      f'{type(build).__name__}')
    self.members = _check_members(members)
    self.build = build
    if model_dirs is not None:
      if base_dir is not None or len(model_dirs) != len(self.members):
        raise ValueError(f'model_dirs must have one folder per member ({len(self.members)}, '
                         f'got {len(model_dirs)}) and replaces base_dir (got {base_dir!r})')
      self._dirs = [os.path.abspath(d) for d in model_dirs]
      if len(set(self._dirs)) != len(self._dirs):
        raise ValueError(f'model_dirs must be distinct, got {list(model_dirs)}')
    else:
      base = os.path.abspath(base_dir or tempfile.mkdtemp(prefix='jestimator_pop_'))
      self._dirs = [os.path.join(base, f'member_{i}') for i in range(len(self.members))]
    self._estimators: dict[int, Estimator] = {}
    self.template = self.member_estimator(0)
    strategy = self.template.compiled_model.strategy
    if not strategy.one_device:
      raise ValueError(f'population mode trains on one device; the template estimator has '
                       f'strategy {type(strategy).__name__}')
    if self.template.state_store.warm_start is not None:
      raise ValueError('population mode starts every member from its seed; warm_start_from is '
                       'not supported')
    self.state: TrainState | None = None  # the population's train state, [N, ...] leaves

  def __len__(self) -> int:
    return len(self.members)

  def member_dir(self, index: int) -> str:
    """Member `index`'s model_dir: `base_dir/member_<index>` (or `model_dirs[index]`)."""
    return self._dirs[index]

  def member_estimator(self, index: int) -> Estimator:
    """Member `index`'s own Estimator (its hyperparameters, in its `member_dir`): train it alone
    to compare, or, after `train(save=True)`, evaluate / predict / export the saved member."""
    if index not in self._estimators:
      self._estimators[index] = self._build(index)
    return self._estimators[index]

  def _build(self, index: int) -> Estimator:
    est = self.build(dict(self.members[index]), self.member_dir(index))
    if not isinstance(est, Estimator):
      raise TypeError(f'build returned {type(est).__name__}, expected a jestimator.Estimator')
    if os.path.abspath(est.model_dir) != self.member_dir(index):
      raise ValueError(f'build must create the estimator in the model_dir it is given '
                       f'({self.member_dir(index)!r}), got model_dir={est.model_dir!r}')
    if SEED in self.members[index] and est.config.random_seed != self.members[index][SEED]:
      raise ValueError(f'members[{index}] has seed {self.members[index][SEED]} but build made '
                       f'an estimator with RunConfig(seed={est.config.random_seed}): pass '
                       f'hparams[{SEED!r}] to RunConfig(seed=...)')
    return est

  # -- the population's state --------------------------------------------------------------------
  def _hyperparam_paths(self, opt_state) -> dict[str, str]:
    """`{member key: path of the injected state holding it}`; fails naming what is wrong."""
    nodes = _injected_nodes(opt_state)
    found: dict[str, list[str]] = {}
    for path, node in nodes:
      scheduled = set(getattr(node, 'hyperparams_states', None) or {})
      for name in node.hyperparams:
        found.setdefault(name, []).append(path if name not in scheduled else f'{path} (schedule)')
    out = {}
    for name in self.members[0]:
      if name == SEED:
        continue
      paths = found.get(name, [])
      if not paths:
        raise ValueError(
            f'member hyperparameter {name!r} is not a numeric hyperparameter in the optimizer '
            f'state (injected: {sorted(found) or "none"}): only what '
            'optax.inject_hyperparams(...)(name=value) keeps in the state can differ between '
            'members, and seed')
      if len(paths) > 1:
        raise ValueError(f'member hyperparameter {name!r} is injected in several optimizer '
                         f'states {paths}: ambiguous')
      if paths[0].endswith('(schedule)'):
        raise ValueError(f'member hyperparameter {name!r} is a schedule in the optimizer '
                         f'state at {paths[0]}: the schedule rewrites it every step, so it '
                         'cannot be set per member; inject a number')
      out[name] = paths[0]
    return out

  def _initial_state(self, features, labels) -> TrainState:
    compiled = self.template.compiled_model
    model = compiled.model
    traced = compiled.traced(ModeKeys.TRAIN,
                             compiled.abstract_variables(features, labels, ModeKeys.TRAIN),
                             features, labels)
    optimizer = traced.spec.optimizer
    if optimizer is None:
      raise ValueError('population mode needs EstimatorSpec.optimizer in TRAIN mode (a train_op '
                       'hides the optimizer state the members differ in)')
    abstract = compiled.abstract_train_state(features, labels)
    paths = self._hyperparam_paths(abstract.opt_state)
    seeds = np.array([m.get(SEED, compiled.seed) for m in self.members], np.uint32)
    values = {name: np.array([m[name] for m in self.members]) for name in paths}

    def create(seed):
      # As `CompiledModel` derives them from `RunConfig(seed)`: one root key -> init, train.
      init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
      return TrainState.create(model.init(init_rng, features, labels, ModeKeys.TRAIN),
                               optimizer, train_rng)

    def create_all(seeds, values):
      state = jax.vmap(create)(seeds)

      def set_values(node):
        if not isinstance(node, _INJECTED):
          return node
        hp = dict(node.hyperparams)
        for name, value in values.items():
          if name in hp:
            hp[name] = value.astype(hp[name].dtype)
        return node._replace(hyperparams=hp)

      opt_state = jax.tree.map(set_values, state.opt_state,
                               is_leaf=lambda x: isinstance(x, _INJECTED))
      return state.replace(opt_state=opt_state)

    # Runs once: XLA's backend optimisations would cost more compile time than they save (as
    # the Estimator's own initialiser).
    state = jax.jit(create_all, compiler_options=INIT_COMPILER_OPTIONS)(seeds, values)
    return compiled.strategy.put_state(state)

  # -- training ------------------------------------------------------------------------------------
  def train(self, input_fn: Callable, max_steps: int | None = None,
            eval_input_fn: Callable | None = None, every_n_steps: int | None = None,
            eval_steps: int | None = None, on_evaluation: OnEvaluation | None = None,
            save: bool = True, summaries: bool = True) -> list[MemberResult]:
    """Trains every member on the same batches of `input_fn`, from step 0.

    Args:
      input_fn: the training input (as `Estimator.train`); every member sees its batches.
      max_steps: stop after this many steps (None: at the end of the input).
      eval_input_fn: evaluated for every active member every `every_n_steps` steps and at the
        end (None: no evaluations).
      every_n_steps: the evaluation cadence (None: only at the end).
      eval_steps: batches per evaluation (None: to the end of `eval_input_fn`).
      on_evaluation: `on_evaluation(step, {member: results})` after each evaluation (active
        members only); returns the indices of members to prune from now on.
      save: write each member's final state as a checkpoint in `member_dir(i)`.
      summaries: write each member's evaluations into its Estimator's `eval/` folder
        (TensorBoard scalars and `eval_results.jsonl`, as `Estimator.evaluate` does).

    Returns:
      One `MemberResult` per member, in order.
    """
    for name, value in (('max_steps', max_steps), ('every_n_steps', every_n_steps),
                        ('eval_steps', eval_steps)):
      if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                or value <= 0):
        raise ValueError(f'{name} must be a positive int or None, got {value!r}')
    if every_n_steps is not None and eval_input_fn is None:
      raise ValueError('every_n_steps needs an eval_input_fn to evaluate')
    if save:
      for i in range(len(self.members)):
        if self.member_estimator(i).latest_checkpoint() is not None:
          raise ValueError(f'member {i}\'s model_dir {self.member_dir(i)!r} already holds a '
                           'checkpoint: a population trains from step 0 and does not resume; use '
                           'new folders (or save=False)')
    est = self.template
    compiled, pipeline = est.compiled_model, est.input_pipeline
    source = pipeline.open(input_fn, ModeKeys.TRAIN)
    if source.endless and max_steps is None:
      source.close()
      raise ValueError('input_fn returned a single batch, repeated every step: give max_steps')
    n = len(self.members)
    results = [MemberResult(i, dict(m), [], 'complete', 0, float('nan'))
               for i, m in enumerate(self.members)]
    try:
      first = source.first('training')
      abstract = compiled.abstract_train_state(first.features, first.labels)
      traced = compiled.traced(ModeKeys.TRAIN, abstract.variables, first.features, first.labels)
      plan = BatchPlan.for_train(first.size, compiled.strategy.pads_train_batches,
                                 traced.padding_aware, bool(abstract.collections))
      state = self._initial_state(first.features, first.labels)
      step_fn = _population_step(compiled.model, plan.masked)
      # Placed as the step's outputs are, so its second call does not compile it again.
      put = compiled.strategy.put_state
      active = put(np.ones((n,), bool))
      frozen = np.zeros(n, bool)  # pruned on the host's word (known without a device sync)
      step, batch, position = 0, first, None
      evaluator = PopulationEvaluator(est, eval_input_fn, eval_steps) if eval_input_fn else None
      losses = None
      while batch is not None:
        features, labels, mask = pipeline.place_batch(batch, plan)
        state, losses, active = step_fn(state, active, features, labels, mask)
        step, position = step + 1, batch.position
        last = max_steps is not None and step >= max_steps
        batch = None if last else next(source, None)
        due = evaluator is not None and (batch is None or (
            every_n_steps is not None and step % every_n_steps == 0))
        if due:
          alive = np.asarray(active)
          evaluated = evaluator(state, alive)
          report = {}
          for i in np.flatnonzero(alive):
            r = dict(evaluated[i])
            results[i].evaluations.append((int(r['global_step']), r))
            report[int(i)] = r
            if summaries:
              self._write_evaluation(int(i), r)
          pruned = on_evaluation(step, report) if on_evaluation is not None else None
          if pruned:
            frozen[_check_indices(pruned, report)] = True
            active = put(alive & ~frozen)
          if not (alive & ~frozen).any():
            break  # every member is pruned or failed: nothing left to train
    finally:
      source.close()
    self.state = state
    host_active = np.asarray(active)
    steps_done = np.asarray(jax.device_get(state.step))
    last_losses = np.asarray(losses) if losses is not None else np.full(n, np.nan)
    for i, r in enumerate(results):
      r.global_step = int(steps_done[i])
      r.status = ('complete' if host_active[i] else 'pruned' if frozen[i] else 'nonfinite')
      # A frozen member's last loss is that of a step it discarded; its own is in evaluations.
      r.train_loss = float(last_losses[i]) if host_active[i] else float('nan')
    if save:
      for r in results:
        r.model_dir = self.save_member(r, position)
    return results

  def _write_evaluation(self, index: int, results: dict[str, Any]) -> None:
    est = self.member_estimator(index)
    eval_dir, step = est.eval_dir(), int(results['global_step'])
    writer = est.summary_writers.get(eval_dir)
    writer.scalars(step, {k: v for k, v in results.items() if k != 'global_step'})
    writer.flush()
    summaries_lib.append_eval_results(eval_dir, step, results, None)

  def member_state(self, index: int) -> TrainState:
    """Member `index`'s train state (after `train`), as a solo Estimator's."""
    if self.state is None:
      raise ValueError('the population has not been trained yet')
    return jax.tree.map(lambda a: a[index], self.state)

  def save_member(self, result: MemberResult, position: dict | None = None) -> str:
    """Checkpoints member `result.index` in its `member_dir` through its own Estimator, with
    `member.json` (hyperparameters, status, evaluations); returns the folder."""
    est = self.member_estimator(result.index)
    state = self.member_state(result.index)
    # As a trainer would: holding the model_dir, through the store's one writer.
    lock = checkpoints.ModelDirLock(est.model_dir).acquire()
    try:
      writer = est.state_store.training()
      writer.start_writing()
      try:
        # A frozen member stopped early: its input position is not the population's.
        writer.save(state, result.global_step,
                    position if result.status == 'complete' else None)
      finally:
        writer.close()
    finally:
      lock.release()
    record = {'index': result.index, 'hparams': result.hparams, 'status': result.status,
              'global_step': result.global_step,
              'evaluations': [[s, _jsonable(r)] for s, r in result.evaluations]}
    path = os.path.join(est.model_dir, MEMBER_FILE)
    with open(path + '.tmp', 'w') as f:
      json.dump(record, f, indent=1, sort_keys=True)
    os.replace(path + '.tmp', path)
    return est.model_dir


def _check_indices(pruned, report: Mapping[int, Any]) -> list[int]:
  out = [int(i) for i in pruned]
  bad = [i for i in out if i not in report]
  if bad:
    raise ValueError(f'on_evaluation returned member(s) {bad} to prune, but only active members '
                     f'{sorted(report)} can be pruned')
  return out


def _jsonable(results: Mapping[str, Any]) -> dict[str, Any]:
  return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in results.items()}


def _population_step(model, masked: bool) -> Callable:
  """`(state[N], active[N], features, labels, mask) -> (state, loss[N], active)`: one train step
  of every member on the same batch; inactive members, and members whose loss or updated
  parameters are not finite, keep their state (the latter turn inactive)."""
  step = steps_lib.make_train_step(model)

  def population_step(state, active, features, labels, mask):
    args = (features, labels, mask) if masked else (features, labels)
    new, outputs = jax.vmap(lambda s: step(s, *args))(state)
    # A finite loss can still give a non-finite update (a rate far too high): check the new
    # parameters too, so a member freezes at its last finite state, not one step after.
    finite = jax.tree.reduce(jnp.logical_and, jax.tree.map(
        lambda a: jnp.all(jnp.isfinite(a), axis=tuple(range(1, a.ndim))), new.params),
        ~outputs['nonfinite'])
    keep = active & finite

    def select(a, b):
      return jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(select, new, state), outputs['loss'], keep

  return jax.jit(population_step, donate_argnums=(0,))


__all__ = ['Population', 'MemberResult', 'MEMBER_FILE', 'SEED']
