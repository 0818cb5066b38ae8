"""`jestimator.summaries`: the documented path of `jestimator.driver.summaries` (the same module object)."""
import sys

from jestimator.driver import summaries as _impl
from jestimator.driver.summaries import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
