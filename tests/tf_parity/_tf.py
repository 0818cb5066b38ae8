"""Shared helpers of the TF-parity suite: reading TF's JSON and comparing with TF's tolerance."""
from __future__ import annotations

import json
import pathlib

import numpy as np

import jestimator as je

DATA = pathlib.Path(__file__).parent / 'data'
RTOL = ATOL = 1e-6  # tf.test.TestCase.assertAllClose


def load(name: str) -> dict:
  """`tests/tf_parity/data/<name>.json` (written by `tf_scripts/`)."""
  return json.loads((DATA / f'{name}.json').read_text())


def assert_close(actual, expected, rtol: float = RTOL, atol: float = ATOL, what: str = ''):
  np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                             rtol=rtol, atol=atol, err_msg=what)


def tf_variables(est) -> dict[str, np.ndarray]:
  """An estimator's trainable variables under TF's names (`params/` dropped)."""
  return {n[len('params/'):]: est.get_variable_value(n) for n in est.get_variable_names()
          if n.startswith('params/')}


def numpy_input(features, labels, batch_size: int, epochs: int = 1):
  """Batches in order (no shuffling), as a TF `Dataset.batch` over the same arrays."""
  features = {k: np.asarray(v) for k, v in features.items()}
  labels = None if labels is None else np.asarray(labels)
  return je.inputs.numpy_input_fn(features, labels, batch_size=batch_size, num_epochs=epochs,
                                  shuffle=False)


def config() -> je.RunConfig:
  return je.RunConfig(seed=0, log_step_count_steps=10**9)


def write_weights(directory: str, weights: dict) -> str:
  """A checkpoint under `directory` holding `{tf_name: value}` as `params/<tf_name>`, the source
  of a `warm_start_from` (TF's tests write the same names into their checkpoints)."""
  tree: dict = {}
  for name, value in weights.items():
    node = tree.setdefault('params', {})
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = np.asarray(value, np.float32)
  ckpt = je.checkpoints.Checkpointer(directory)
  ckpt.save(0, tree, {'step': np.zeros((), np.int64)}, {})
  ckpt.wait()
  ckpt.close()
  return directory
