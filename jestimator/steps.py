"""`jestimator.steps`: the documented path of `jestimator.model.steps` (the same module object)."""
import sys

from jestimator.model import steps as _impl
from jestimator.model.steps import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
