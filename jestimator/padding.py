"""`jestimator.padding`: the documented path of `jestimator.model.padding` (the same module object)."""
import sys

from jestimator.model import padding as _impl
from jestimator.model.padding import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
