"""`jestimator.early_stopping`: the documented path of `jestimator.driver.early_stopping` (the same module object)."""
import sys

from jestimator.driver import early_stopping as _impl
from jestimator.driver.early_stopping import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
