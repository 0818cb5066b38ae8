"""Population mode: every member's numbers are those of training it alone with an Estimator."""
from __future__ import annotations

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jestimator as je
from jestimator import tuning
from jestimator.padding import example_mask

rng = np.random.default_rng(3)
X = rng.normal(size=(200, 6)).astype(np.float32)
Y = ((X[:, :3].sum(1) - X[:, 3] * X[:, 4] + 0.3 * rng.normal(size=200)) > 0).astype(np.float32)
# 200 rows at batch 32: the last batch of each epoch is short (8 rows), padded with its mask.
TRAIN = je.inputs.numpy_input_fn({'x': X}, Y, batch_size=32, num_epochs=3, shuffle=True, seed=7)
EVAL = je.inputs.numpy_input_fn({'x': X}, Y, batch_size=64, shuffle=False)


def model_fn(features, labels, mode, params):
  h = nn.relu(nn.Dense(16)(features['x']))
  h = nn.Dropout(0.2, deterministic=mode != je.ModeKeys.TRAIN)(h)
  logits = nn.Dense(1)(h)[:, 0]
  losses = optax.sigmoid_binary_cross_entropy(logits, labels)
  mask = example_mask()
  w = jnp.ones_like(losses) if mask is None else mask
  loss = jnp.sum(losses * w) / jnp.sum(w)
  opt = optax.inject_hyperparams(optax.adamw)(learning_rate=params['learning_rate'],
                                               weight_decay=params['weight_decay'])
  return je.EstimatorSpec(mode, loss=loss, optimizer=opt, predictions={'logits': logits},
                          eval_metrics={'accuracy': je.metrics.accuracy(
                              labels, (logits > 0).astype(jnp.float32))})


def build(hp, model_dir):
  config = je.RunConfig(seed=hp['seed'], log_step_count_steps=10_000,
                        save_checkpoints_steps=None, save_checkpoints_secs=None)
  return je.Estimator(model_fn, model_dir, config=config,
                      params={'learning_rate': hp['learning_rate'],
                              'weight_decay': hp['weight_decay']})


MEMBERS = [{'learning_rate': lr, 'weight_decay': wd, 'seed': seed}
           for lr, wd, seed in [(1e-3, 0.0, 0), (1e-2, 1e-2, 0), (3e-2, 0.0, 1), (1e-1, 1e-1, 2)]]


def _solo(tmp_path, hp, name, max_steps=None):
  est = build(hp, str(tmp_path / name))
  est.train(TRAIN, max_steps=max_steps)
  return est, est.evaluate(EVAL)


def test_members_match_training_alone(tmp_path):
  pop = tuning.Population(build, MEMBERS, base_dir=str(tmp_path / 'pop'))
  results = pop.train(TRAIN, eval_input_fn=EVAL, every_n_steps=10)
  steps = [s for s, _ in results[0].evaluations]
  assert steps == [10, 19]  # 600 rows at batch 32: the 19th batch is short; the end evaluates
  for member, r in zip(MEMBERS, results):
    assert r.status == 'complete' and r.global_step == 19
    _, alone = _solo(tmp_path, member, f'solo_{r.index}')
    assert abs(r.final['loss'] - alone['loss']) < 1e-4, (member, r.final, alone)
    assert r.final['accuracy'] == pytest.approx(alone['accuracy'], abs=1e-6)
  # The members really differ (different rates, decays and seeds).
  assert len({round(r.final['loss'], 4) for r in results}) == len(MEMBERS)
  # Each saved member is an ordinary model_dir: its Estimator restores it and evaluates the same.
  for r in results:
    est = pop.member_estimator(r.index)
    assert est.latest_checkpoint() is not None
    assert abs(est.evaluate(EVAL)['loss'] - r.final['loss']) < 1e-5
    with open(os.path.join(r.model_dir, tuning.population.MEMBER_FILE)) as f:
      record = json.load(f)
    assert record['hparams'] == MEMBERS[r.index] and record['status'] == 'complete'
    assert [s for s, _ in record['evaluations']] == steps


def test_pruned_member_freezes_and_stops_reporting(tmp_path):
  seen = []

  def on_evaluation(step, results):
    seen.append((step, sorted(results)))
    return [3] if step == 10 else []

  pop = tuning.Population(build, MEMBERS, base_dir=str(tmp_path / 'pop'))
  results = pop.train(TRAIN, eval_input_fn=EVAL, every_n_steps=10, on_evaluation=on_evaluation)
  assert seen == [(10, [0, 1, 2, 3]), (19, [0, 1, 2])]
  pruned = results[3]
  assert pruned.status == 'pruned' and pruned.global_step == 10
  assert [s for s, _ in pruned.evaluations] == [10]
  # Its parameters froze at step 10: the same as training it alone for 10 steps.
  est, alone = _solo(tmp_path, MEMBERS[3], 'solo_10', max_steps=10)
  assert abs(alone['loss'] - pruned.final['loss']) < 1e-4
  saved = pop.member_estimator(3)
  assert saved.evaluate(EVAL)['global_step'] == 10
  for a, b in zip(jax.tree.leaves(pop.member_state(3).params),
                  jax.tree.leaves(est.state_store.newest.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  assert results[0].status == 'complete' and results[0].global_step == 19


def test_nonfinite_member_is_frozen_not_fatal(tmp_path):
  members = [dict(MEMBERS[0]), {**MEMBERS[0], 'learning_rate': float('inf')}]
  pop = tuning.Population(build, members, base_dir=str(tmp_path / 'pop'))
  results = pop.train(TRAIN, max_steps=5, eval_input_fn=EVAL)
  assert results[0].status == 'complete' and np.isfinite(results[0].final['loss'])
  assert results[1].status == 'nonfinite' and results[1].evaluations == []
  assert results[1].global_step == 0  # frozen before its first (non-finite) update
  # A population trains from step 0: saved members are not overwritten or resumed.
  again = tuning.Population(build, members, base_dir=str(tmp_path / 'pop'))
  with pytest.raises(ValueError, match='already holds a checkpoint'):
    again.train(TRAIN, max_steps=5)


def test_training_stops_when_every_member_is_pruned(tmp_path):
  pop = tuning.Population(build, MEMBERS[:2], base_dir=str(tmp_path / 'pop'))
  results = pop.train(TRAIN, max_steps=15, eval_input_fn=EVAL, every_n_steps=5, save=False,
                      on_evaluation=lambda step, results: list(results) if step == 5 else [])
  assert [(r.status, r.global_step) for r in results] == [('pruned', 5), ('pruned', 5)]


def test_refuses_what_cannot_vary(tmp_path):
  def plain(hp, model_dir):  # the rate is a constant of the program, not optimizer state
    def fn(features, labels, mode):
      spec = model_fn(features, labels, mode, {'learning_rate': 0.1, 'weight_decay': 0.0})
      return spec.replace(optimizer=optax.adam(hp['learning_rate'])) if hasattr(
          spec, 'replace') else je.EstimatorSpec(mode, loss=spec.loss,
                                                 optimizer=optax.adam(hp['learning_rate']))
    return je.Estimator(fn, model_dir, config=je.RunConfig(seed=hp['seed']))

  pop = tuning.Population(plain, [{'learning_rate': 0.1, 'seed': 0}], str(tmp_path / 'a'))
  with pytest.raises(ValueError, match="'learning_rate' is not a numeric hyperparameter"):
    pop.train(TRAIN, max_steps=2)

  with pytest.raises(ValueError, match='same hyperparameters'):
    tuning.Population(build, [MEMBERS[0], {'learning_rate': 0.1}], str(tmp_path / 'b'))
  with pytest.raises(ValueError, match=r"\[1\]\['seed'\] must be an int"):
    tuning.Population(build, [MEMBERS[0], {**MEMBERS[0], 'seed': -1}], str(tmp_path / 'c'))

  def ignores_seed(hp, model_dir):
    return build({**hp, 'seed': 0}, model_dir)

  pop = tuning.Population(ignores_seed, [MEMBERS[0], MEMBERS[2]], str(tmp_path / 'd'))
  with pytest.raises(ValueError, match='RunConfig'):
    pop.train(TRAIN, max_steps=2)
