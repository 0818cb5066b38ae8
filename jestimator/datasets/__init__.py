"""Small datasets bundled with jestimator (for examples, tests and benchmarks)."""
from jestimator.datasets import adult

__all__ = ['adult']
