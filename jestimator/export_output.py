"""`jestimator.export_output`: the documented path of `jestimator.model.export_output` (the same module object)."""
import sys

from jestimator.model import export_output as _impl
from jestimator.model.export_output import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
