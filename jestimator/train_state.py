"""`jestimator.train_state`: the documented path of `jestimator.state.train_state` (the same module object)."""
import sys

from jestimator.state import train_state as _impl
from jestimator.state.train_state import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
