"""`jestimator.train_ops`: the documented path of `jestimator.model.train_ops` (one module)."""
import sys

from jestimator.model import train_ops as _impl
from jestimator.model.train_ops import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
