"""Distribution strategies and multi-host training (`RunConfig(strategy=...)`).

  SingleDevice()        everything on one device (the default)
  Pmap(devices=None)    jax.pmap over the local devices; collectives over `Pmap.axis_name`
  DataParallel(mesh=None, devices=None, partitioner=None)
                        jax.jit over a Mesh, batch sharded on `data`, state replicated (or its
                        large parameters and their optimizer slots sharded, with a partitioner);
                        the recommended strategy, and the one that spans hosts
  MinSizePartitioner(min_shard_bytes), RegexPartitioner([(regex, spec), ...])
                        which parameters DataParallel shards (tables larger than a device)
  initialize(...)       join a multi-process run (wraps jax.distributed.initialize)
  train_and_evaluate(estimator, TrainSpec(...), EvalSpec(...))
                        train, evaluating and exporting after checkpoint saves (TF's local mode)
  run_evaluator(estimator, eval_spec, max_steps)
                        a standalone evaluator job watching model_dir

The batch an `input_fn` yields is per process; the global batch is that times the number of
processes, and each per-process batch must divide evenly over the local devices. An `input_fn`
that names `input_context` receives an `InputContext` to shard its data:

  def input_fn(input_context):
    shard = slice(input_context.input_pipeline_id, None, input_context.num_input_pipelines)
    return numpy_input_fn({'x': x[shard]}, y[shard], batch_size=64, num_epochs=None,
                          shuffle=True, seed=0)()
"""
from jestimator.distributed.data_parallel import DataParallel
from jestimator.distributed.partitioners import MinSizePartitioner, Partitioner, RegexPartitioner
from jestimator.distributed.pmap import Pmap
from jestimator.distributed.runtime import initialize
from jestimator.distributed.training import EvalSpec, TrainSpec, train_and_evaluate
from jestimator.distributed.evaluator import run_evaluator
from jestimator.driver.strategy import InputContext, SingleDevice, Strategy

__all__ = ['DataParallel', 'EvalSpec', 'InputContext', 'MinSizePartitioner', 'Partitioner', 'Pmap',
           'RegexPartitioner', 'SingleDevice', 'Strategy', 'TrainSpec', 'initialize',
           'run_evaluator', 'train_and_evaluate']
