"""Optimizers for the canned estimators: TF's FTRL as an optax transformation, and name lookup.

`get_optimizer` turns what a canned estimator's `optimizer=` argument accepts (TF's strings
`'Adagrad', 'Adam', 'Ftrl', 'RMSProp', 'SGD'`, an optax `GradientTransformation`, or a zero-argument
callable returning one) into an optax `GradientTransformation`. The default learning rates of the
canned estimators live here too, so every estimator reads them from one place:

| estimator | optimizer | learning rate |
|---|---|---|
| Linear* | `'Ftrl'` | `linear_learning_rate(n_columns)` = min(0.2, 1/sqrt(n_columns)) |
| DNN* | `'Adagrad'` | `DNN_LEARNING_RATE` = 0.05 |
| DNNLinearCombined*, linear | `'Ftrl'` | `linear_learning_rate(n, cap=0.005)` |
| DNNLinearCombined*, dnn | `'Adagrad'` | `DNN_LEARNING_RATE` = 0.05 |
| Baseline* | `'Ftrl'` | `BASELINE_LEARNING_RATE` = 0.3 |

The DNN rate is TF's documented value (and the v1 estimators' actual one). TF 2.15's v2 estimators
silently used Keras' default 0.001, with which a DNN barely moves in a few epochs; we deliberately
follow the documentation instead. `linear_learning_rate(n, cap)` is `min(cap, 1 / sqrt(n))`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

__all__ = [
    'BASELINE_LEARNING_RATE', 'DNN_LEARNING_RATE', 'LINEAR_LEARNING_RATE',
    'OPTIMIZER_NAMES', 'WIDE_AND_DEEP_LINEAR_LEARNING_RATE', 'FtrlState', 'ftrl',
    'get_optimizer', 'linear_learning_rate',
]

DNN_LEARNING_RATE = 0.05
"""Adagrad learning rate of DNN* and of the DNN part of DNNLinearCombined* (TF's documented)."""
LINEAR_LEARNING_RATE = 0.2
"""Upper bound of the Ftrl learning rate of Linear*: min(0.2, 1/sqrt(n_columns))."""
WIDE_AND_DEEP_LINEAR_LEARNING_RATE = 0.005
"""Upper bound of the Ftrl learning rate of the linear part of DNNLinearCombined*."""
BASELINE_LEARNING_RATE = 0.3
"""Ftrl learning rate of Baseline*."""

ScalarOrSchedule = Union[float, jax.Array, Callable[[jax.Array], jax.Array]]


def linear_learning_rate(num_columns: int, cap: float = LINEAR_LEARNING_RATE) -> float:
  """TF's default Ftrl learning rate for a linear model: `min(cap, 1 / sqrt(num_columns))`.

  Args:
    num_columns: number of feature columns of the linear model (0 gives `cap`).
    cap: 0.2 for Linear*, `WIDE_AND_DEEP_LINEAR_LEARNING_RATE` (0.005) for the wide part of
      DNNLinearCombined*.

  Example: `linear_learning_rate(100)` is 0.1; `linear_learning_rate(4)` is 0.2.
  """
  if num_columns <= 0:
    return float(cap)
  return float(min(cap, 1.0 / math.sqrt(num_columns)))


# ---------------------------------------------------------------------------------------------
# FTRL-Proximal.


class FtrlState(NamedTuple):
  """State of `ftrl`: the step count (for schedules) and TF's two slots per parameter.

  `accumulator` is TF's `accumulator` slot (n: running sum of squared gradients, starting at
  `initial_accumulator_value`); `linear` is TF's `linear` slot (z, starting at 0).
  """
  count: jax.Array
  accumulator: Any
  linear: Any


def ftrl(learning_rate: ScalarOrSchedule,
         learning_rate_power: float = -0.5,
         initial_accumulator_value: float = 0.1,
         l1_regularization_strength: float = 0.0,
         l2_regularization_strength: float = 0.0,
         l2_shrinkage_regularization_strength: float = 0.0,
         beta: float = 0.0) -> optax.GradientTransformation:
  """TF's FTRL-Proximal optimizer (`tf.keras.optimizers.Ftrl`, kernel `ApplyFtrlV2`) for optax.

  Per parameter w with gradient g, accumulator n and linear slot z (lr = learning_rate,
  p = -learning_rate_power, l2 = l2_regularization_strength + beta / (2 lr) as Keras folds `beta`):

      g' = g + 2 * l2_shrinkage * w
      n' = n + g**2                              # the shrinkage term stays out of n (TF >= 2.4)
      z' = z + g' - (n'**p - n**p) / lr * w
      w' = (l1 * sign(z') - z') / (n'**p / lr + 2 * l2)   if |z'| > l1,   else 0

  FTRL computes the new parameter value itself, so `update` needs `params` and returns
  `w' - w` (optax applies updates by addition). `learning_rate` may be an optax schedule of the
  step count.

  Example:
    opt = ftrl(0.2, l1_regularization_strength=0.001)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  """
  if learning_rate_power > 0:
    raise ValueError(f'ftrl: learning_rate_power must be <= 0, got {learning_rate_power}')
  if initial_accumulator_value < 0:
    raise ValueError('ftrl: initial_accumulator_value must be >= 0, got '
                     f'{initial_accumulator_value}')
  for arg, value in (('l1_regularization_strength', l1_regularization_strength),
                     ('l2_regularization_strength', l2_regularization_strength),
                     ('l2_shrinkage_regularization_strength',
                      l2_shrinkage_regularization_strength),
                     ('beta', beta)):
    if value < 0:
      raise ValueError(f'ftrl: {arg} must be >= 0, got {value}')
  if not callable(learning_rate) and float(learning_rate) <= 0:
    raise ValueError(f'ftrl: learning_rate must be > 0, got {learning_rate}')
  power = -float(learning_rate_power)

  def init_fn(params):
    return FtrlState(
        count=jnp.zeros([], jnp.int32),
        accumulator=jax.tree.map(
            lambda p: jnp.full_like(p, initial_accumulator_value), params),
        linear=jax.tree.map(jnp.zeros_like, params))

  def _pow(x):
    # sqrt is both faster and exactly what TF's special case for -0.5 computes.
    return jnp.sqrt(x) if power == 0.5 else jnp.power(x, power)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('ftrl computes new parameter values itself: call '
                       'update(grads, state, params) with params')
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    l2 = l2_regularization_strength + beta / (2.0 * lr)

    def leaf(g, w, n, z):
      g = g.astype(w.dtype)
      g_shrunk = g + 2.0 * l2_shrinkage_regularization_strength * w if (
          l2_shrinkage_regularization_strength > 0) else g
      new_n = n + g * g
      new_z = z + g_shrunk - (_pow(new_n) - _pow(n)) / lr * w
      x = l1_regularization_strength * jnp.sign(new_z) - new_z
      y = _pow(new_n) / lr + 2.0 * l2
      new_w = jnp.where(jnp.abs(new_z) > l1_regularization_strength, x / y, 0.0)
      return new_w.astype(w.dtype) - w, new_n, new_z

    out = jax.tree.map(leaf, updates, params, state.accumulator, state.linear)
    treedef = jax.tree.structure(updates)
    # Unzip the (update, n, z) triples leaf by leaf back into three trees.
    flat = treedef.flatten_up_to(out)
    unzip = lambda i: treedef.unflatten([t[i] for t in flat])
    new_state = FtrlState(count=optax.safe_increment(state.count),
                          accumulator=unzip(1), linear=unzip(2))
    return unzip(0), new_state

  return optax.GradientTransformation(init_fn, update_fn)


# ---------------------------------------------------------------------------------------------
# Lookup by name.

# Keras' (legacy) default learning rates, used when neither the caller nor the estimator gives one.
_KERAS_DEFAULT_LR = {'adagrad': 0.001, 'adam': 0.001, 'ftrl': 0.001, 'rmsprop': 0.001,
                     'sgd': 0.01}

OPTIMIZER_NAMES = ('Adagrad', 'Adam', 'Ftrl', 'RMSProp', 'SGD')
"""The optimizer names `get_optimizer` knows (case-insensitive), as TF's canned estimators."""


def _by_name(name: str, lr: ScalarOrSchedule) -> optax.GradientTransformation:
  # TF (Keras legacy optimizer) defaults. Adagrad and Adam add epsilon inside / after the
  # bias-corrected sqrt (optax) rather than after the raw sqrt (TF): relative differences
  # of order 1e-7 in the step. RMSProp matches TF exactly (eps outside the sqrt, ms from 0).
  if name == 'adagrad':
    return optax.adagrad(lr, initial_accumulator_value=0.1, eps=1e-7)
  if name == 'adam':
    return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-7)
  if name == 'rmsprop':
    return optax.rmsprop(lr, decay=0.9, eps=1e-7, eps_in_sqrt=False)
  if name == 'sgd':
    return optax.sgd(lr)
  return ftrl(lr)


def _is_transformation(obj: Any) -> bool:
  return callable(getattr(obj, 'init', None)) and callable(getattr(obj, 'update', None))


def get_optimizer(opt: str | optax.GradientTransformation | Callable[[], Any],
                  learning_rate: ScalarOrSchedule | None = None,
                  default_learning_rate: ScalarOrSchedule | None = None,
                  ) -> optax.GradientTransformation:
  """Returns the optax transformation for a canned estimator's `optimizer` argument.

  Args:
    opt: one of `OPTIMIZER_NAMES` (case-insensitive; TF's Keras defaults: Adagrad with initial
      accumulator 0.1 and epsilon 1e-7, Adam with epsilon 1e-7, RMSProp with rho 0.9 and
      epsilon 1e-7, plain SGD, `ftrl` with TF's defaults), an optax `GradientTransformation`
      (returned as is), or a zero-argument callable returning one (called once here).
    learning_rate: learning rate (or optax schedule) for a string `opt`; overrides
      `default_learning_rate`. Ignored for transformations, which carry their own.
    default_learning_rate: the estimator's default for a string `opt` (e.g. `DNN_LEARNING_RATE`);
      when both are None, Keras' default for that optimizer (0.001; SGD 0.01).

  Raises:
    ValueError: an unknown optimizer name (the message lists the known ones).
    TypeError: `opt` (or what the callable returns) is not an optax GradientTransformation.

  Example:
    get_optimizer('Adagrad', default_learning_rate=DNN_LEARNING_RATE)   # optax Adagrad, lr 0.05
  """
  if isinstance(opt, str):
    key = opt.lower()
    if key not in _KERAS_DEFAULT_LR:
      raise ValueError(f'Unknown optimizer name {opt!r}; expected one of {list(OPTIMIZER_NAMES)} '
                       '(case-insensitive), an optax GradientTransformation, or a callable '
                       'returning one')
    lr = learning_rate if learning_rate is not None else default_learning_rate
    if lr is None:
      lr = _KERAS_DEFAULT_LR[key]
    return _by_name(key, lr)
  if _is_transformation(opt):
    return opt
  if callable(opt):
    made = opt()
    if not _is_transformation(made):
      raise TypeError('optimizer callable must return an optax GradientTransformation, got '
                      f'{type(made).__name__}')
    return made
  raise TypeError(f'optimizer must be one of {list(OPTIMIZER_NAMES)}, an optax '
                  'GradientTransformation, or a zero-argument callable returning one; got '
                  f'{type(opt).__name__}')
