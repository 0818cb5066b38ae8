"""The REST server behind `python -m jestimator.serve` (TF Serving's REST API, standard library)."""
