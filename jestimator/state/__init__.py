"""Train state and where it lives: `TrainState`, Orbax checkpoints, warm start and the
`StateStore` (restore for every verb, the newest in-memory state, and per `train()` call a
`TrainingCheckpoints` that owns the checkpoint writer)."""
