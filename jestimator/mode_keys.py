"""`jestimator.mode_keys`: the documented path of `jestimator.model.mode_keys` (the same module object)."""
import sys

from jestimator.model import mode_keys as _impl
from jestimator.model.mode_keys import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
