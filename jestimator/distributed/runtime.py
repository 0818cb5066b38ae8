"""Multi-process runs on JAX's own runtime: `initialize()` wraps `jax.distributed.initialize`.

Every process runs the same program. Process 0 hosts the coordinator; each process feeds its own
shard of the input (see `InputContext`), `DataParallel` assembles the global batch, Orbax saves
and restores the global state, and only process 0 writes summaries, evaluation results and
exports.

Failure bounds (what happens when a peer dies):
  * JAX's coordination service expects a heartbeat from every process; one that misses them for
    `heartbeat_timeout_seconds` (JAX's default: 100 s) is declared dead and every survivor is
    terminated (SIGABRT) with `Terminating process because the JAX distributed service detected
    fatal errors. This most likely indicates that another task died`. A dead process 0 (the
    coordinator) is noticed by the others at once. So a survivor exits within
    `heartbeat_timeout_seconds` plus a few seconds, never hangs.
  * On CPU, `XLA_FLAGS=--xla_cpu_collective_timeout_seconds=N` makes a collective waiting on a dead
    peer raise `JaxRuntimeError: ... Gloo all-reduce failed ... Timed out` after N s instead;
    the process then still ends at the heartbeat bound when JAX shuts down.
  * `initialization_timeout` (JAX's default: 300 s) bounds the wait for peers that never start.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax

logger = logging.getLogger('jestimator')

ENV_COORDINATOR_ADDRESS = 'JESTIMATOR_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JESTIMATOR_NUM_PROCESSES'
ENV_PROCESS_ID = 'JESTIMATOR_PROCESS_ID'
ENV_HEARTBEAT_TIMEOUT = 'JESTIMATOR_HEARTBEAT_TIMEOUT_SECONDS'


def _env_int(name: str) -> int | None:
  raw = os.environ.get(name)
  if raw is None or raw.strip() == '':
    return None
  try:
    return int(raw)
  except ValueError:
    raise ValueError(f'environment variable {name} must be an integer, got {raw!r}') from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *,
               heartbeat_timeout_seconds: int | None = None,
               initialization_timeout: int | None = None, **kwargs: Any) -> bool:
  """Joins this process to a multi-process run; call it first, before any other JAX use.

  Each argument left None is read from the environment (`JESTIMATOR_COORDINATOR_ADDRESS`,
  `JESTIMATOR_NUM_PROCESSES`, `JESTIMATOR_PROCESS_ID`, `JESTIMATOR_HEARTBEAT_TIMEOUT_SECONDS`),
  and what is still missing is left to JAX's cluster auto-detection (SLURM, Open MPI, Cloud TPU
  pods, ...). With nothing given and no cluster detected, the run stays single-process.

  Args:
    coordinator_address: `host:port` of process 0, reachable by every process.
    num_processes: how many processes take part.
    process_id: this process's index in `[0, num_processes)`.
    heartbeat_timeout_seconds: a process silent this long is declared dead and the others are
      terminated (see the module docstring for failure bounds). None keeps JAX's default (100 s).
    initialization_timeout: seconds to wait for every process to connect (JAX's default 300 s).
    **kwargs: passed on to `jax.distributed.initialize` (e.g. `local_device_ids`).

  Returns:
    True when this call (or an earlier one) joined a multi-process run, False for a single
    process (nothing was initialised).

  Raises:
    ValueError: an argument or environment variable is malformed, or only some of
      `coordinator_address`/`num_processes`/`process_id` are known and no cluster supplies the
      rest.
    RuntimeError: JAX was already used in this process (the backend is initialised), or the
      peers did not connect within `initialization_timeout`.

  Example:
    # On every host (process 0 at 10.0.0.1):
    jestimator.distributed.initialize('10.0.0.1:1234', num_processes=4, process_id=rank)
    config = jestimator.RunConfig(strategy=jestimator.distributed.DataParallel())
  """
  if jax.distributed.is_initialized():
    logger.info('jax.distributed is already initialised (process %d of %d)',
                jax.process_index(), jax.process_count())
    return True
  given = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
           'process_id': process_id}
  coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR_ADDRESS) or None
  num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
  process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
  if heartbeat_timeout_seconds is None:
    heartbeat_timeout_seconds = _env_int(ENV_HEARTBEAT_TIMEOUT)
  _validate(coordinator_address, num_processes, process_id, heartbeat_timeout_seconds)
  if num_processes == 1 and coordinator_address is None:
    return False
  options = dict(kwargs)
  if heartbeat_timeout_seconds is not None:
    options['heartbeat_timeout_seconds'] = int(heartbeat_timeout_seconds)
  if initialization_timeout is not None:
    options['initialization_timeout'] = int(initialization_timeout)
  nothing_known = coordinator_address is None and num_processes is None and process_id is None
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **options)
  except ValueError as e:
    # JAX found no cluster to fill in the missing values.
    if nothing_known:
      logger.info('No coordinator given and no cluster detected: running as a single process')
      return False
    raise ValueError(
        f'jestimator.distributed.initialize: could not complete the cluster settings {given} '
        f'(environment: {ENV_COORDINATOR_ADDRESS}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}): {e}'
    ) from e
  logger.info('Joined multi-process run: process %d of %d, %d local / %d global devices',
              jax.process_index(), jax.process_count(), jax.local_device_count(),
              jax.device_count())
  return True


def _validate(address, num_processes, process_id, heartbeat) -> None:
  if address is not None and (not isinstance(address, str) or ':' not in address):
    raise ValueError(f'coordinator_address must be "host:port", got {address!r}')
  if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
    raise ValueError(f'num_processes must be a positive int, got {num_processes!r}')
  if process_id is not None and (not isinstance(process_id, int) or process_id < 0):
    raise ValueError(f'process_id must be a non-negative int, got {process_id!r}')
  if num_processes is not None and process_id is not None and process_id >= num_processes:
    raise ValueError(f'process_id must be < num_processes, got process_id={process_id} with '
                     f'num_processes={num_processes}')
  if heartbeat is not None and (not isinstance(heartbeat, int) or heartbeat < 1):
    raise ValueError(f'heartbeat_timeout_seconds must be a positive int, got {heartbeat!r}')
