"""What a model is: the `model_fn` contract and the pure functions built from it.

`model_fn` (`ModelFn`: pure init / apply, traced specs), `EstimatorSpec`, `ModeKeys`, export
outputs, the padding mask, streaming metrics and the pure train / eval / predict steps. Nothing
here knows about input functions, checkpoints or loops.
"""
