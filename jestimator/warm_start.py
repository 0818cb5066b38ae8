"""`jestimator.warm_start`: the documented path of `jestimator.state.warm_start` (the same module object)."""
import sys

from jestimator.state import warm_start as _impl
from jestimator.state.warm_start import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
