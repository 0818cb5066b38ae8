"""`jestimator.model_fn`: the documented path of `jestimator.model.model_fn` (the same module object)."""
import sys

from jestimator.model import model_fn as _impl
from jestimator.model.model_fn import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
