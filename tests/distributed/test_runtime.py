"""`jestimator.distributed.initialize` settings and strategy construction (in-process, no peers).

`jax.distributed.initialize` is replaced by a recorder: these tests check what jestimator passes
to it; the real runtime is exercised by test_multiprocess.py.
"""
from __future__ import annotations

import jax
import pytest

from jestimator import distributed as jd
from jestimator.distributed import runtime

ENV = (runtime.ENV_COORDINATOR_ADDRESS, runtime.ENV_NUM_PROCESSES, runtime.ENV_PROCESS_ID,
       runtime.ENV_HEARTBEAT_TIMEOUT)


@pytest.fixture
def calls(monkeypatch):
  recorded = []

  def fake_initialize(coordinator_address=None, num_processes=None, process_id=None, **kwargs):
    recorded.append(dict(coordinator_address=coordinator_address, num_processes=num_processes,
                         process_id=process_id, **kwargs))
    if None in (coordinator_address, num_processes, process_id):
      raise ValueError('coordinator_address should be defined.')  # JAX found no cluster

  monkeypatch.setattr(jax.distributed, 'initialize', fake_initialize)
  monkeypatch.setattr(jax.distributed, 'is_initialized', lambda: False)
  for name in ENV:
    monkeypatch.delenv(name, raising=False)
  return recorded


def test_reads_environment(calls, monkeypatch):
  monkeypatch.setenv('JESTIMATOR_COORDINATOR_ADDRESS', '10.0.0.1:1234')
  monkeypatch.setenv('JESTIMATOR_NUM_PROCESSES', '4')
  monkeypatch.setenv('JESTIMATOR_PROCESS_ID', '3')
  monkeypatch.setenv('JESTIMATOR_HEARTBEAT_TIMEOUT_SECONDS', '30')
  assert jd.initialize() is True
  assert calls == [dict(coordinator_address='10.0.0.1:1234', num_processes=4, process_id=3,
                        heartbeat_timeout_seconds=30)]


def test_arguments_override_environment(calls, monkeypatch):
  monkeypatch.setenv('JESTIMATOR_PROCESS_ID', '3')
  monkeypatch.setenv('JESTIMATOR_NUM_PROCESSES', '4')
  assert jd.initialize('host:1', process_id=0, initialization_timeout=7, local_device_ids=[0])
  assert calls == [dict(coordinator_address='host:1', num_processes=4, process_id=0,
                        initialization_timeout=7, local_device_ids=[0])]


def test_nothing_known_and_no_cluster_is_single_process(calls):
  assert jd.initialize() is False
  assert len(calls) == 1  # JAX's auto-detection was asked first


def test_one_process_without_coordinator_skips_jax(calls):
  assert jd.initialize(num_processes=1) is False
  assert calls == []


def test_partial_settings_name_what_is_missing(calls):
  with pytest.raises(ValueError, match='JESTIMATOR_PROCESS_ID'):
    jd.initialize('host:1', num_processes=2)


@pytest.mark.parametrize('env, value, match', [
    ('JESTIMATOR_NUM_PROCESSES', 'two', 'JESTIMATOR_NUM_PROCESSES must be an integer'),
    ('JESTIMATOR_PROCESS_ID', '5', 'process_id must be < num_processes'),
    ('JESTIMATOR_COORDINATOR_ADDRESS', 'nohostport', 'host:port'),
    ('JESTIMATOR_HEARTBEAT_TIMEOUT_SECONDS', '0', 'heartbeat_timeout_seconds'),
])
def test_malformed_settings(calls, monkeypatch, env, value, match):
  monkeypatch.setenv('JESTIMATOR_NUM_PROCESSES', '2')
  monkeypatch.setenv(env, value)
  with pytest.raises(ValueError, match=match):
    jd.initialize()
  assert calls == []  # validated before JAX is touched


def test_already_initialized_is_a_no_op(calls, monkeypatch):
  monkeypatch.setattr(jax.distributed, 'is_initialized', lambda: True)
  assert jd.initialize('host:1', 2, 0) is True
  assert calls == []


def test_strategy_arguments_validated():
  with pytest.raises(ValueError, match='mesh or devices'):
    jd.DataParallel(mesh=jax.sharding.Mesh(jax.devices()[:1], ('data',)),
                    devices=jax.devices()[:1])
  with pytest.raises(ValueError, match="'data' axis"):
    jd.DataParallel(mesh=jax.sharding.Mesh(jax.devices()[:1], ('batch',)))
  with pytest.raises(TypeError, match='Mesh'):
    jd.DataParallel(mesh='data')
  with pytest.raises(ValueError, match='at least one device'):
    jd.Pmap(devices=[])


def test_one_device_strategies_report_their_width():
  for strategy in (jd.Pmap(jax.devices()[:1]), jd.DataParallel(devices=jax.devices()[:1])):
    assert strategy.batch_multiple == 1 and strategy.num_replicas_in_sync == 1
    assert strategy.sync_every is None  # one device: no collectives to throttle
    assert strategy.input_context() == jd.InputContext(1, 0, 1)
