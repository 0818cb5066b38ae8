"""Custom update rules (TF's `train_op`) that run inside the pure compiled train step.

`EstimatorSpec(train_op=...)` takes a `TrainOp`: `init(params) -> state` and
`update(ctx, params, state) -> (params, state)`, both traced inside the compiled step, so
`steps_per_loop`, `Pmap` / `DataParallel`, multi-process training, checkpoints and resumption keep
working. `state` is the train state's `opt_state` (saved in checkpoints). The `StepContext` gives
the global step, the loss and gradients for a selection of parameters (rerunning the model_fn with
the mutable collections passed along and a fresh dropout key per forward pass) and a `grad_fn` for
SAM. Built-ins, as functions:

- `minimize(tx)`: what `EstimatorSpec(optimizer=tx)` means, bit for bit.
- `groups({name: tx}, by=...)`: an optax transformation giving each parameter group its own
  optimizer (one backward pass; each state covers only its group).
- `alternate([Update(...), ...])`: several updates, each with its loss, parameters, optimizer and
  cadence, sequential or joint (TF-GAN's sequential and joint train hooks).
- `then(op, ema(decay), assign(fn))`: post-update transforms (weight averaging, clipping).

Parameters are selected by regular expressions searched in their checkpoint names
(`params/generator/Dense_0/kernel`), never by object identity.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import jax
import jax.numpy as jnp
import optax

from jestimator.model import params_select as sel
from jestimator.model import step_context as sc
from jestimator.model.params_select import names, select
from jestimator.model.step_context import StepContext

__all__ = ['StepContext', 'TrainOp', 'Update', 'alternate', 'assign', 'ema', 'extras', 'groups',
           'minimize', 'names', 'select', 'then']

#: Where `then` keeps the values of its post-update transforms (EMA weights) in the op's state;
#: `extras` finds them there, in a live state or a checkpoint read without the model.
EXTRAS = 'extras'


@runtime_checkable
class TrainOp(Protocol):
  """An update rule: `init(params) -> state`; `update(ctx, params, state) -> (params, state)`.

  Both run traced inside the compiled step. `state` must be a pytree of arrays (it is the train
  state's `opt_state`, saved in checkpoints); the step counter is the Estimator's.
  """

  def init(self, params: Any) -> Any: ...

  def update(self, ctx: 'StepContext', params: Any, state: Any) -> tuple[Any, Any]: ...


# -- minimize --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Minimize:
  tx: optax.GradientTransformation
  loss: str | None = None

  def init(self, params):
    return self.tx.init(params)

  def update(self, ctx: StepContext, params, state):
    value, grads = ctx.loss_and_grad(params, self.loss)
    return self.apply(ctx, params, state, value, grads)

  def apply(self, ctx: StepContext, params, state, value, grads):
    """The update from this step's loss and gradients at `params`."""
    updates, state = sc.tx_update(self.tx, grads, state, params, value,
                                  ctx.grad_fn(params, self.loss))
    return optax.apply_updates(params, updates), state


def minimize(tx: optax.GradientTransformation, loss: str | None = None) -> TrainOp:
  """One backward pass of `loss` (None: the spec's `loss`) and `tx` over all parameters; the
  state is `tx.init(params)`. `EstimatorSpec(optimizer=tx)` means `minimize(tx)`, bit for bit.
  `tx.update` also gets `value=` the loss and `grad_fn=` (SAM) when it takes them."""
  return _Minimize(_as_tx(tx, 'minimize(tx)'), loss)


def is_transformation(tx: Any) -> bool:
  """True for an optax transformation, `optax.MultiSteps` included (a class of its own)."""
  return isinstance(tx, (optax.GradientTransformation, optax.MultiSteps))


def _as_tx(tx, where: str) -> optax.GradientTransformation:
  """`tx` as a GradientTransformation (`MultiSteps` through its own `gradient_transformation()`,
  the same init and update), or a TypeError naming `where`."""
  if isinstance(tx, optax.MultiSteps):
    return tx.gradient_transformation()
  if not isinstance(tx, optax.GradientTransformation):
    raise TypeError(f'{where} needs an optax GradientTransformation, got {type(tx).__name__}')
  return tx


# -- groups ----------------------------------------------------------------------------------------
def groups(transforms: Mapping[str, optax.GradientTransformation],
           by: Mapping[str, str] | None = None) -> optax.GradientTransformation:
  """One optax transformation applying `transforms[name]` to the parameters of group `name`
  (`optax.multi_transform`: one backward pass; a group's state covers only its parameters).

  Args:
    transforms: `{group name: optax transformation}`.
    by: `{group name: regex}` searched in each parameter's `params/...` name; None: the group
      name itself is the regex. Every parameter must fall in exactly one group.
  """
  if not transforms:
    raise ValueError('groups() needs at least one {name: transformation}')
  transforms = {name: _as_tx(tx, f'groups()[{name!r}]') for name, tx in transforms.items()}
  by = dict(by) if by is not None else {n: re.escape(n) for n in transforms}
  if set(by) != set(transforms):
    raise ValueError(f'groups(by=...) names {sorted(by)} but the transformations are named '
                     f'{sorted(transforms)}')
  patterns = {n: re.compile(p) for n, p in by.items()}

  def labels(params):
    def label(path, _):
      name = sel.path_name(path)
      hits = [n for n, p in patterns.items() if p.search(name)]
      if len(hits) != 1:
        raise ValueError(f'groups(): parameter {name!r} matches {hits or "no group"}; each '
                         f'parameter must match exactly one of {by}')
      return hits[0]
    return jax.tree_util.tree_map_with_path(label, params)

  return optax.multi_transform(dict(transforms), labels)


# -- alternate -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Update:
  """One sub-update of `alternate`.

  Attributes:
    tx: the optax transformation; its state covers only the selected parameters.
    loss: the name of a loss in `EstimatorSpec(losses=...)`, or None for the spec's `loss`.
    wrt: a regex selecting the parameters (`params/...` names) it updates; None: all.
    every: it runs at global steps `s` with `s % every == 0` (a pure function of the step, so
      a resumed run replays the same sequence).
    repeat: how many times it runs in a step where it runs (each a forward and backward pass).
    name: its name in the state, checkpoints and `update_losses` (default: `loss`, else
      `update_<index>`).
  """
  tx: optax.GradientTransformation
  loss: str | None = None
  wrt: str | None = None
  every: int = 1
  repeat: int = 1
  name: str | None = None

  def __post_init__(self):
    object.__setattr__(self, 'tx', _as_tx(self.tx, 'Update(tx=...)'))
    for field in ('every', 'repeat'):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'Update({field}=...) must be an int >= 1, got {value!r}')


@dataclasses.dataclass(frozen=True)
class _Alternate:
  updates: tuple[Update, ...]
  mode: str

  def init(self, params):
    return {u.name: u.tx.init(select(params, u.wrt)) for u in self.updates}

  def _step(self, ctx, u: Update, params, state):
    """One run of `u` from `params`: `(updated selected params, new state)`."""
    value, grads = ctx.loss_and_grad(params, u.loss, u.wrt)
    sub = select(params, u.wrt)
    updates, state = sc.tx_update(u.tx, grads, state, sub, value,
                                  ctx.grad_fn(params, u.loss, u.wrt))
    return optax.apply_updates(sub, updates), state

  def update(self, ctx: StepContext, params, state):
    params, state = self._update(ctx, params, state)
    # Every update's loss at the step's starting parameters (the first forward pass computed
    # them all), also for an update that did not run at this step.
    for u in self.updates:
      ctx.report(u.name, ctx.loss if u.loss is None else ctx.losses[u.loss])
    return params, state

  def _update(self, ctx: StepContext, params, state):
    state = dict(state)
    rounds = max(u.repeat for u in self.updates)
    if self.mode == 'sequential':
      for u in self.updates:
        for _ in range(u.repeat):
          def run(p, s, u=u):
            sub, s = self._step(ctx, u, p, s)
            return sel.merge(p, sub), s
          params, state[u.name] = _maybe(ctx, u.every, run, params, state[u.name])
      return params, state
    for r in range(rounds):  # joint: every update of a round starts from the same params
      start, merged = params, {}
      for u in self.updates:
        if u.repeat <= r:
          continue
        run = lambda p, s, u=u: self._step(ctx, u, p, s)
        if u.every == 1:
          sub, state[u.name] = run(start, state[u.name])
        else:
          sub, state[u.name] = ctx.when(ctx.step % u.every == 0,
                                        lambda _, s, u=u: run(start, s), select(start, u.wrt),
                                        state[u.name])
        overlap = sorted(set(sel.flat(sub)) & set(merged))
        if overlap:
          raise ValueError(f"alternate(mode='joint'): update {u.name!r} selects parameters "
                           f'another update of the same round selects: {overlap[:5]}')
        merged = {**merged, **sel.flat(sub)}
      params = sel.merge_flat(start, merged)
    return params, state


def _maybe(ctx: StepContext, every: int, fn, params, state):
  if every == 1:
    return fn(params, state)
  return ctx.when(ctx.step % every == 0, fn, params, state)


def alternate(updates: Sequence[Update], mode: str = 'sequential') -> TrainOp:
  """Several updates per step, as TF-GAN's train hooks (`get_sequential_train_hooks` /
  `get_joint_train_hooks`), all on the step's batch.

  `mode='sequential'`: in list order, each update (and each repeat) starts from the parameters
  the previous one left. `'joint'`: in each round all updates compute their gradients at the same
  parameters and then apply them (their selections must not overlap); round `r` holds the
  updates with `repeat > r`. The step's reported `loss`, and each update's in `update_losses`,
  come from the first forward pass of an update with `every=1` (one is required): the losses at
  the step's starting parameters. Each optimizer counts its own updates.
  """
  updates = tuple(updates)
  if not updates:
    raise ValueError('alternate() needs at least one Update')
  if mode not in ('sequential', 'joint'):
    raise ValueError(f"alternate(mode=...) must be 'sequential' or 'joint', got {mode!r}")
  named = []
  for i, u in enumerate(updates):
    if not isinstance(u, Update):
      raise TypeError(f'alternate() takes Update(...)s, got {type(u).__name__} at {i}')
    named.append(dataclasses.replace(u, name=u.name or u.loss or f'update_{i}'))
  seen = [u.name for u in named]
  if len(set(seen)) != len(seen):
    raise ValueError(f'alternate(): update names must differ, got {seen} (pass Update(name=...))')
  if all(u.every > 1 for u in named):
    raise ValueError('alternate() needs an update with every=1: a step must make an '
                     'unconditional forward pass to report its loss')
  return _Alternate(tuple(named), mode)


# -- post-update transforms ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Ema:
  decay: float
  wrt: str | None
  name: str
  num_updates: bool

  def init(self, params):
    return select(params, self.wrt)

  def apply(self, ctx, params, value):
    decay = jnp.asarray(self.decay, jnp.float32)
    if self.num_updates:  # tf.train.ExponentialMovingAverage(num_updates=global_step)
      n = (ctx.step + 1).astype(jnp.float32)
      decay = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
    new = select(params, self.wrt)
    # TF's assign_moving_average form: shadow -= (1 - decay) * (shadow - variable).
    value = jax.tree.map(lambda s, p: s - (1 - decay).astype(s.dtype) * (s - p), value, new)
    return params, value


def ema(decay: float, wrt: str | None = None, name: str = 'ema',
        num_updates: bool = False) -> Any:
  """An exponential moving average of the (selected) weights after each update, as
  `tf.train.ExponentialMovingAverage(decay).apply(...)` after the optimizer: starts at the
  initial weights; `shadow -= (1 - decay) * (shadow - weight)`. `num_updates=True` caps the
  decay at `(1 + n) / (10 + n)` with `n` the global step after the update, as TF's
  `num_updates=global_step`. Saved in checkpoints; `Estimator(eval_variables=name)` evaluates,
  predicts and exports with it."""
  if not 0.0 <= float(decay) <= 1.0:
    raise ValueError(f'ema(decay=...) must be in [0, 1], got {decay}')
  return _Ema(float(decay), wrt, name, bool(num_updates))


@dataclasses.dataclass(frozen=True)
class _Assign:
  fn: Callable
  wrt: str | None
  tree: bool

  def init(self, params):
    return None

  def apply(self, ctx, params, value):
    sub = select(params, self.wrt)
    sub = self.fn(sub) if self.tree else jax.tree.map(self.fn, sub)
    return sel.merge(params, sub), value


def assign(fn: Callable, wrt: str | None = None, tree: bool = False) -> Any:
  """Replaces the (selected) weights after each update by `fn(weight)` (each leaf), or with
  `tree=True` by `fn(selected tree)`: WGAN's weight clipping (`lambda w: jnp.clip(w, -c, c)`),
  projections onto a constraint set."""
  if not callable(fn):
    raise TypeError(f'assign(fn) needs a callable, got {type(fn).__name__}')
  return _Assign(fn, wrt, bool(tree))


@dataclasses.dataclass(frozen=True)
class _Then:
  op: Any
  post: tuple

  def init(self, params):
    values = {}
    for p in self.post:
      v = p.init(params)
      if v is not None:
        values[p.name] = v
    return {'update': self.op.init(params), EXTRAS: values}

  def update(self, ctx, params, state):
    params, inner = self.op.update(ctx, params, state['update'])
    values = dict(state[EXTRAS])
    for p in self.post:
      key = getattr(p, 'name', None)
      params, new = p.apply(ctx, params, values.get(key))
      if key in values:
        values[key] = new
    return params, {'update': inner, EXTRAS: values}


def then(op: Any, *post: Any) -> TrainOp:
  """`op` (a `TrainOp`, or an optax transformation for `minimize(tx)`) followed, in order, by
  post-update transforms (`ema(...)`, `assign(...)`). The state is
  `{'update': op's state, 'extras': {name: values}}` (the EMA weights, saved in checkpoints)."""
  if is_transformation(op):
    op = minimize(op)
  if not isinstance(op, TrainOp):
    raise TypeError(f'then(op, ...) needs a TrainOp or an optax transformation, got '
                    f'{type(op).__name__}')
  names_ = [p.name for p in post if isinstance(p, _Ema)]
  if len(set(names_)) != len(names_):
    raise ValueError(f'then(): ema names must differ, got {names_}')
  for p in post:
    if not isinstance(p, (_Ema, _Assign)):
      raise TypeError(f'then() takes ema(...) and assign(...) transforms, got {type(p).__name__}')
  return _Then(op, tuple(post))


def extras(opt_state: Any) -> dict[str, Any]:
  """`{name: values}` of the post-update transforms in a train op's state (a live one, or the
  train item of a checkpoint read without the model): the EMA weights, as pruned `params` trees."""
  found = {}

  def walk(node):
    if isinstance(node, Mapping):
      if EXTRAS in node and isinstance(node[EXTRAS], Mapping) and 'update' in node:
        found.update(node[EXTRAS])
      for v in node.values():
        walk(v)
    elif isinstance(node, (list, tuple)):
      for v in node:
        walk(v)

  walk(opt_state)
  return found
