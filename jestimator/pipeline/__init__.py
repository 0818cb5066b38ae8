"""The input pipeline, in the order a batch goes through it:

`input_fn` (calling the user's input_fn, iterating and resuming what it returned) -> `batches`
(one raw batch to a validated numeric one, through the `host_stage` protocol feature columns
implement) -> `prefetch` (produced ahead in a thread) -> `source` (`HostBatch`es of one call, and
`InputPipeline`, which runs these stages) -> `plan` (`BatchPlan`: pad or not, to which size, with
which mask) -> placement (`InputPipeline.place_batch`, the one place batches go to the device).

`numpy_input` holds the built-in input functions users call (`numpy_input_fn`,
`pandas_input_fn`), public with the file-based ones in `jestimator.inputs`.
"""
