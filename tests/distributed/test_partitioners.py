"""Partitioners and how a state's leaves get their specs (slots follow their parameter), on
abstract or host values: no devices needed."""
from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jestimator import distributed as jd
from jestimator.distributed import sharding

SIZES = {'data': 8}


def test_min_size_partitioner_shards_parameters_of_at_least_the_size():
  part = jd.MinSizePartitioner(min_shard_bytes=8192)
  # 8 KiB and more is split over the whole axis, whatever its size; rank 1 never is.
  assert part('params/t', (256, 8), np.float32, 'data', 8) == P('data', None)
  assert part('params/t', (256, 8), np.float32, 'data', 2) == P('data', None)
  assert part('params/t', (255, 8), np.float32, 'data', 8) is None
  assert part('params/b', (4096,), np.float32, 'data', 8) is None
  assert part('params/t', (1 << 20, 8), np.float32, 'data', 1) is None
  assert jd.MinSizePartitioner().min_shard_bytes == 64 << 20
  with pytest.raises(ValueError, match='min_shard_bytes'):
    jd.MinSizePartitioner(min_shard_bytes=-1)


def test_regex_partitioner_two_matches_name_both():
  part = jd.RegexPartitioner([(r'embedding', ('data', None)), (r'C3_', P('data', None))])
  assert part('params/C1_embedding/w', (8, 2), np.float32, 'data', 8) == P('data', None)
  assert part('params/dense/kernel', (8, 2), np.float32, 'data', 8) is None
  with pytest.raises(ValueError, match=r"'embedding' and 'C3_'"):
    part('params/C3_embedding/w', (8, 2), np.float32, 'data', 8)


def _state(params, opt_state):
  return {'params': params, 'opt_state': opt_state, 'step': np.zeros((), np.int32)}


def test_slots_follow_their_parameter_by_path_and_shape():
  params = {'wide': {'w': np.zeros((64, 1), np.float32)},
            'deep': {'emb': np.zeros((64, 4), np.float32), 'k': np.zeros((4, 4), np.float32)}}
  tx = optax.MultiSteps(optax.multi_transform(
      {'a': optax.adagrad(0.1), 'b': optax.adam(0.1)},
      lambda p: {k: 'a' if k == 'wide' else 'b' for k in p}), every_k_schedule=2)
  state = _state(params, jax.eval_shape(tx.init, params))
  part = jd.RegexPartitioner([(r'/(w|emb)$', ('data', None))])
  specs, placed = sharding.state_specs(state, part, 'data', SIZES)
  named = {jax.tree_util.keystr(p): s for p, s in
           jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, P))[0]}
  sharded = sorted(k for k, s in named.items() if s != P())
  # The two tables, Adagrad's accumulator, Adam's two moments of `emb`, MultiSteps' sums.
  assert len(sharded) == 2 + 1 + 2 + 2, sharded
  assert all(k.endswith(("['w']", "['emb']")) for k in sharded)
  assert [p.path for p in placed if p.shards == 8] == ['params/deep/emb', 'params/wide/w']


def test_indivisible_rows_name_the_parameter_and_the_nearest_sizes():
  part = jd.MinSizePartitioner(min_shard_bytes=0)
  state = _state({'t': np.zeros((1001, 4), np.float32)}, {})
  with pytest.raises(ValueError, match=r"'params/t' has 1001 rows .* 8 shards .* 1000 or 1008"):
    sharding.state_specs(state, part, 'data', SIZES)


def test_spec_naming_an_unknown_axis_is_an_error():
  part = jd.RegexPartitioner([('t', ('model', None))])
  with pytest.raises(ValueError, match="names mesh axis 'model'"):
    sharding.placements({'params': {'t': np.zeros((8, 2))}}, part, 'data', SIZES)
