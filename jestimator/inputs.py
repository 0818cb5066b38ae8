"""`jestimator.inputs`: the documented path of `jestimator.pipeline.inputs` (the same module object)."""
import sys

from jestimator.pipeline import inputs as _impl
from jestimator.pipeline.inputs import *  # noqa: F401,F403  (the names type checkers resolve)

sys.modules[__name__] = _impl  # one module: attributes and monkeypatching are shared
