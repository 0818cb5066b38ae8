"""RunConfig defaults, validation and replace()."""
from __future__ import annotations

import pytest

from jestimator.run_config import RunConfig


def test_defaults_match_tf():
  c = RunConfig()
  assert (c.save_summary_steps, c.save_checkpoints_steps, c.save_checkpoints_secs,
          c.keep_checkpoint_max, c.log_step_count_steps, c.steps_per_loop) == (
              100, None, 600, 5, 100, 1)
  assert c.random_seed == 0 and RunConfig(seed=7).random_seed == 7


def test_save_steps_turns_secs_off():
  c = RunConfig(save_checkpoints_steps=10)
  assert c.save_checkpoints_secs is None
  assert RunConfig(save_checkpoints_secs=5).save_checkpoints_steps is None
  c = RunConfig(save_checkpoints_steps=None, save_checkpoints_secs=None)
  assert c.save_checkpoints_steps is None and c.save_checkpoints_secs is None


def test_both_save_settings_is_an_error():
  with pytest.raises(ValueError, match='save_checkpoints_steps and save_checkpoints_secs'):
    RunConfig(save_checkpoints_steps=10, save_checkpoints_secs=60)


@pytest.mark.parametrize('field', ['save_summary_steps', 'log_step_count_steps', 'steps_per_loop'])
@pytest.mark.parametrize('value', [0, -1, 1.5])
def test_positive_ints(field, value):
  if field == 'save_summary_steps' and value == 0:
    assert RunConfig(save_summary_steps=0).save_summary_steps == 0  # TF: summaries off
    return
  with pytest.raises(ValueError, match=field):
    RunConfig(**{field: value})


def test_bad_values():
  with pytest.raises(ValueError, match='save_checkpoints_steps'):
    RunConfig(save_checkpoints_steps=-1)
  assert not RunConfig(save_checkpoints_steps=0).saves_checkpoints  # TF: 0 turns them off
  with pytest.raises(ValueError, match='model_dir'):
    RunConfig(model_dir='')


def test_replace():
  c = RunConfig(save_checkpoints_steps=10, seed=1)
  d = c.replace(save_checkpoints_secs=30)
  assert (d.save_checkpoints_secs, d.save_checkpoints_steps, d.seed) == (30, None, 1)
  e = d.replace(save_checkpoints_steps=5)
  assert (e.save_checkpoints_steps, e.save_checkpoints_secs) == (5, None)
  assert c.save_checkpoints_steps == 10  # immutable: the original is unchanged
  assert c.replace(tf_random_seed=3).seed == 3  # TF's name for the seed
  with pytest.raises(ValueError, match='keep_checkpoint_every_n_hours'):
    c.replace(keep_checkpoint_every_n_hours=3)
  with pytest.raises(Exception):
    c.seed = 3
