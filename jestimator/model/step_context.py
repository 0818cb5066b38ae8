"""`StepContext`: what a train op's `update` sees inside one compiled train step (forward passes
with the collections passed along and a dropout key each, gradients of a parameter selection,
SAM's `grad_fn`, conditional updates), and `tx_update`, an optax update with its extra args."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jestimator.model import params_select as sel
from jestimator.model.params_select import select


class StepContext:
  """What a `TrainOp.update` sees inside one compiled train step.

  Attributes:
    step: the global step before this step's update (an int32 scalar), the same on resume.
    axis_name: the data-parallel axis (`Pmap`), or None; `loss_and_grad` already averages over it.

  Every forward pass (`loss_and_grad`, `grad_fn`'s function) reruns the model_fn on the step's
  batch with the mutable collections as the previous pass left them (BatchNorm statistics see
  exactly the passes made) and its own dropout key: the first pass uses the step's key
  (`fold_in(rng, step)`, as `minimize`), pass `i > 0` uses `fold_in(that key, i)`.
  """

  def __init__(self, forward: Callable, step, rng, collections, axis_name: str | None):
    self.step = step
    self.axis_name = axis_name
    self._forward = forward   # (variables, rng) -> ((spec, updated), collected)
    self._rng = rng
    self._calls = 0
    self._depth = 0           # > 0 inside `when`: the reported loss is taken outside only
    self._carry = {'collections': collections, 'losses': {}}
    self.loss = None          # the reported loss: the first unconditional pass's spec.loss
    self.losses = None        # and its spec.losses (`{name: scalar}`)
    self.collected = None     # that pass's summaries and hook tensors

  def snapshot(self) -> dict:
    """What the passes so far changed, for `restore` (to discard passes made to look)."""
    return {'calls': self._calls, 'carry': {**self._carry, 'losses': dict(self._carry['losses'])},
            'first': (self.loss, self.losses, self.collected)}

  def restore(self, snapshot: dict) -> None:
    """Back to `snapshot`: later passes count for nothing (XLA drops their unused work)."""
    self._calls, self._carry = snapshot['calls'], snapshot['carry']
    self.loss, self.losses, self.collected = snapshot['first']

  @property
  def collections(self) -> Any:
    """The mutable collections as the forward passes so far left them."""
    return self._carry['collections']

  def _next_rng(self):
    i, self._calls = self._calls, self._calls + 1
    return self._rng if i == 0 else jax.random.fold_in(self._rng, i)

  def _named_loss(self, spec, loss: str | None):
    if loss is None:
      return spec.loss
    named = spec.losses or {}
    if loss not in named:
      raise ValueError(f'train op asks for loss {loss!r}, but the EstimatorSpec has losses '
                       f'{sorted(named)} (EstimatorSpec(losses={{name: scalar}}))')
    return named[loss]

  def loss_and_grad(self, params, loss: str | None = None, wrt: str | None = None
                    ) -> tuple[jax.Array, Any]:
    """`(loss value, gradients)` of the model_fn's `loss` (or `losses[loss]`) at `params`.

    `wrt` (a regex over `params/...` names) differentiates only the selected parameters: the
    gradients are then the pruned tree `select(params, wrt)`; None: the whole `params` tree.
    Under `Pmap` the loss, gradients and collections are averaged over the replicas.
    """
    rng = self._next_rng()
    collections = self.collections

    def fn(sub):
      full = sub if wrt is None else sel.merge(params, sub)
      (spec, updated), collected = self._forward({'params': full, **collections}, rng)
      return self._named_loss(spec, loss), ((spec.loss, dict(spec.losses or {})), updated,
                                            collected)

    target = params if wrt is None else select(params, wrt)
    (value, (main, updated, collected)), grads = jax.value_and_grad(fn, has_aux=True)(target)
    if self.axis_name is not None:
      grads, value, main, updated = lax.pmean((grads, value, main, updated), self.axis_name)
    self._carry['collections'] = {**collections, **updated}
    if self.loss is None and self._depth == 0:
      (self.loss, self.losses), self.collected = main, collected
    return value, grads

  def grad_fn(self, params, loss: str | None = None, wrt: str | None = None) -> Callable:
    """`grad_fn(sub_params, i) -> gradients` as `optax.contrib.sam(opaque_mode=True)` calls it:
    each call is one more forward pass (own dropout key, collections passed along)."""
    def fn(sub, _i=None):
      full_params = sub if wrt is None else sel.merge(params, sub)
      return self.loss_and_grad(full_params, loss, wrt)[1]
    return fn

  def report(self, name: str, value) -> None:
    """Publishes a sub-update's loss as step output `update_losses[name]` (hooks, summaries and
    the progress line show it). Inside `when`, `declare` the name first."""
    self._carry['losses'][name] = jnp.asarray(value, jnp.float32)

  def declare(self, names_: Sequence[str]) -> None:
    """Declares sub-update losses that may be reported inside `when` (NaN until reported)."""
    for n in names_:
      self._carry['losses'].setdefault(n, jnp.full((), jnp.nan, jnp.float32))

  def when(self, pred, fn: Callable, *operands):
    """`fn(*operands)` where `pred` (a traced bool) holds, else `operands` unchanged, as one
    `lax.cond`: forward passes inside change the collections only when `fn` runs. `fn` must
    return the structure of `operands`."""
    def run(carry, ops):
      saved, self._carry = self._carry, carry
      self._depth += 1
      try:
        out = fn(*ops)
        return out, self._carry
      finally:
        self._depth -= 1
        self._carry = saved

    out, self._carry = lax.cond(pred, run, lambda carry, ops: (ops, carry),
                                self._carry, operands)
    return out

  def finish(self):
    """`(reported loss, collections, update losses, collected)` after the update (the step's
    job)."""
    if self.loss is None:
      raise ValueError('the train op made no forward pass outside ctx.when: the step has no loss '
                       'to report (give at least one update every=1)')
    return self.loss, self.collections, self._carry['losses'], self.collected


def tx_update(tx: optax.GradientTransformation, grads, state, params, value, grad_fn=None):
  """`tx.update` with the extra arguments it takes: `value=` the loss
  (`contrib.reduce_on_plateau`), `grad_fn=` (`contrib.sam(opaque_mode=True)`)."""
  extra = {'value': value}
  if grad_fn is not None:
    extra['grad_fn'] = grad_fn
  if not isinstance(tx, optax.GradientTransformationExtraArgs):
    return tx.update(grads, state, params)
  sig = inspect.signature(tx.update)
  if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
    extra = {k: v for k, v in extra.items() if k in sig.parameters}
  return tx.update(grads, state, params, **extra)
