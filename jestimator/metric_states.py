"""`jestimator.metric_states`: the documented path of `jestimator.model.metric_states` (the same module object)."""
import sys

from jestimator.model import metric_states as _impl
from jestimator.model.metric_states import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
