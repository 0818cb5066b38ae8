"""The export format's identity, shared by the writer (`jestimator.export.artifact`, which documents
the layout) and the loader (`jestimator.serving.loader`): `signature.json`'s `format` and
`format_version`. A loader refuses a newer version than `FORMAT_VERSION`."""
from __future__ import annotations

FORMAT = 'jestimator.export'
FORMAT_VERSION = 1

__all__ = ['FORMAT', 'FORMAT_VERSION']
