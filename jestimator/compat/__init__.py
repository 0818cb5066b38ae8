"""Compatibility namespaces for ported TensorFlow programs (`jestimator.compat.v1`)."""
from jestimator.compat import v1

__all__ = ['v1']
