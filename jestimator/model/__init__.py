"""The model: a `model_fn`, what it returns, and the pure functions built from it.

- The model itself: `model_fn` (`ModelFn`, the model transform: a TF-style `model_fn` made into
  pure Flax `init` / `apply`, and its spec traced per mode), `spec` (`EstimatorSpec`),
  `mode_keys`, `export_output`, `padding` (the example mask a model_fn reads).
- What it computes, as pure jit-able functions: `steps` (train / eval / predict steps),
  `metrics` and `metric_states` (streaming metrics), `summary` (summaries from inside it),
  `predictions` (finishing its predictions on the host).
- Shared by the core: `fn_args` (calling user functions with the arguments they name),
  `errors`.

Nothing here knows about input functions, checkpoints, strategies or loops; the driver compiles
these functions for a strategy (`driver.compiled.CompiledModel`).
"""
