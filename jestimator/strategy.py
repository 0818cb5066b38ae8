"""`jestimator.strategy`: the documented path of `jestimator.driver.strategy` (the same module object)."""
import sys

from jestimator.driver import strategy as _impl
from jestimator.driver.strategy import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
