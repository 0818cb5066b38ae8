"""`jestimator.run_config`: the documented path of `jestimator.driver.run_config` (the same module object)."""
import sys

from jestimator.driver import run_config as _impl
from jestimator.driver.run_config import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
