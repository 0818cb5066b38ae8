"""Distribution strategies and multi-host training (`RunConfig(strategy=...)`).

  SingleDevice()        everything on one device (the default)
  Pmap(devices=None)    jax.pmap over the local devices; collectives over `Pmap.axis_name`
  DataParallel(mesh=None, devices=None)
                        jax.jit over a Mesh, batch sharded on `data`, state replicated; the
                        recommended strategy, and the one that spans hosts
  initialize(...)       join a multi-process run (wraps jax.distributed.initialize)

The batch an `input_fn` yields is per process; the global batch is that times the number of
processes, and each per-process batch must divide evenly over the local devices. An `input_fn`
that names `input_context` receives an `InputContext` to shard its data:

  def input_fn(input_context):
    shard = slice(input_context.input_pipeline_id, None, input_context.num_input_pipelines)
    return numpy_input_fn({'x': x[shard]}, y[shard], batch_size=64, num_epochs=None,
                          shuffle=True, seed=0)()
"""
from jestimator.distributed.data_parallel import DataParallel
from jestimator.distributed.pmap import Pmap
from jestimator.distributed.runtime import initialize
from jestimator.strategy import InputContext, SingleDevice, Strategy

__all__ = ['DataParallel', 'InputContext', 'Pmap', 'SingleDevice', 'Strategy', 'initialize']
