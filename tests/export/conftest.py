"""Fixtures of the export tests (models live in `_export_models.py`)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import _export_models  # noqa: E402


@pytest.fixture(scope='session')
def models(tmp_path_factory):
  """An `_export_models.Models`: `models.get(kind) -> (estimator, export path)`, cached."""
  return _export_models.Models(str(tmp_path_factory.mktemp('export_models')))
