"""`HookRunner`: the hooks of one loop, called in order; the one place train, evaluate and predict
run hooks (`begin` and `after_create_state`, the requests of `before_step`, fetching the requested
values, `after_step`, `end`)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from jestimator.driver.hooks import Hook, StepContext, fetch_values


class HookRunner:
  """Runs a loop's hooks in list order (the user's, the model_fn's, then the built-in ones).

  Args:
    hooks: the hooks, in the order they are called.
    to_host: the strategy's device-to-host transfer (`Strategy.to_host`).
    what: what produces the step outputs ('train step', ...), for the error on an unknown name.
  """

  def __init__(self, hooks: Sequence[Hook], to_host: Callable[[Any], Any], what: str):
    self.hooks = list(hooks)
    self._to_host = to_host
    self._what = what

  def __bool__(self) -> bool:
    return bool(self.hooks)

  def add(self, *hooks: Hook) -> None:
    """Appends hooks (called after those already here)."""
    self.hooks.extend(hooks)

  def begin(self, state: Any) -> None:
    """`begin` on every hook, then `after_create_state(state)` on every hook."""
    for h in self.hooks:
      h.begin()
    for h in self.hooks:
      h.after_create_state(state)

  def before_step(self, ctx: StepContext) -> set[str]:
    """Asks every hook; the union of the step outputs they request."""
    wanted: set[str] = set()
    for h in self.hooks:
      wanted.update(h.before_step(ctx) or ())
    return wanted

  def fetch(self, outputs: Mapping[str, Any], wanted, host_values: Mapping[str, Any] | None = None
            ) -> dict[str, Any]:
    """The requested values as numpy (see `hooks.fetch_values`)."""
    return fetch_values(outputs, wanted, self._to_host, host_values, self._what)

  def after_step(self, ctx: StepContext, values: dict[str, Any]) -> None:
    for h in self.hooks:
      h.after_step(ctx, values)

  def end(self, state: Any) -> None:
    for h in self.hooks:
      h.end(state)
