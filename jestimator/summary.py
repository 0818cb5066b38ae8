"""`jestimator.summary`: the documented path of `jestimator.model.summary` (the same module object)."""
import sys

from jestimator.model import summary as _impl
from jestimator.model.summary import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
