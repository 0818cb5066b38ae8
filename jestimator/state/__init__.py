"""Train state and where it lives: `TrainState`, Orbax checkpoints, warm start and the
`StateStore` (checkpointer + newest in-memory state + restore)."""
