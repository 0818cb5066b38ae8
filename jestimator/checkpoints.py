"""`jestimator.checkpoints`: the documented path of `jestimator.state.checkpoints` (the same module object)."""
import sys

from jestimator.state import checkpoints as _impl
from jestimator.state.checkpoints import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
