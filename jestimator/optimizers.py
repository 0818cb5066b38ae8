"""`jestimator.optimizers`: the documented path of `jestimator.canned.optimizers` (the same module object)."""
import sys

from jestimator.canned import optimizers as _impl
from jestimator.canned.optimizers import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
