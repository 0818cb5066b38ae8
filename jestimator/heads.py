"""`jestimator.heads`: the documented path of `jestimator.canned.heads` (the same module object)."""
import sys

from jestimator.canned import heads as _impl
from jestimator.canned.heads import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
