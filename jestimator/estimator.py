"""`jestimator.estimator`: the documented path of `jestimator.driver.estimator` (the same module object)."""
import sys

from jestimator.driver import estimator as _impl
from jestimator.driver.estimator import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
