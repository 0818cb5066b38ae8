"""`jestimator.metrics`: the documented path of `jestimator.model.metrics` (the same module object)."""
import sys

from jestimator.model import metrics as _impl
from jestimator.model.metrics import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
