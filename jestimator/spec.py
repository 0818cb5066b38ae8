"""`jestimator.spec`: the documented path of `jestimator.model.spec` (the same module object)."""
import sys

from jestimator.model import spec as _impl
from jestimator.model.spec import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
