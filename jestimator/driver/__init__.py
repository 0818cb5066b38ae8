"""The driver: `Estimator` (a thin facade), the compiled model, strategies, and one loop per verb
(`train`, `evaluate`, `predict`), with hooks, summaries and `RunConfig`."""
