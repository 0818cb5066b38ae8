"""`jestimator.hooks`: the documented path of `jestimator.driver.hooks` (the same module object)."""
import sys

from jestimator.driver import hooks as _impl
from jestimator.driver.hooks import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
