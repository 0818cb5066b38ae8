"""The input pipeline: input_fn -> validate -> host stage -> pad -> place.

`inputs` (built-in input functions), `host_stage` (the protocol feature columns implement),
`batches` (validation, padding), `prefetch` and `source` (`InputPipeline`, the one place batches
are placed on the device).
"""
