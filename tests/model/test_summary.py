"""jestimator.summary from a model_fn, the event files it lands in, and canned DNN layer summaries.

Event files are read back with TensorBoard's own `EventAccumulator`; expected values are
computed independently with numpy from the (unshuffled) input.
"""
from __future__ import annotations

import glob
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import _models
import jestimator as je
from jestimator import summary
from jestimator.mode_keys import ModeKeys
from jestimator.spec import EstimatorSpec

BATCH = 10


def _events(logdir):
  acc = EventAccumulator(logdir, size_guidance={'scalars': 0, 'histograms': 0})
  acc.Reload()
  return acc


def _scalars(acc, tag):
  return [(e.step, e.value) for e in acc.Scalars(tag)]


def _summary_model_fn(features, labels, mode):
  x = features['x']
  logits = nn.Dense(1)(x)[:, 0]
  summary.scalar('data/mean_x0', jnp.mean(x[:, 0]))
  summary.histogram('data/x', x)
  if mode == ModeKeys.PREDICT:
    return EstimatorSpec(mode, predictions={'logits': logits})
  loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1))


def _in_order(x, y, num_epochs=None):
  return je.inputs.numpy_input_fn({'x': x}, y, batch_size=BATCH, num_epochs=num_epochs,
                                  shuffle=False)


# -- histogram states ---------------------------------------------------------------------------
def test_histogram_state_matches_numpy_and_merges_exactly():
  rng = np.random.default_rng(0)
  a = rng.normal(scale=3.0, size=(50, 7)).astype(np.float32)
  b = np.concatenate([rng.exponential(size=40), [0.0, np.nan, np.inf]]).astype(np.float32)
  limits = summary.bucket_limits()
  # Independent definition (TF's HistogramProto): bucket i holds limits[i-1] <= v < limits[i].
  values = np.concatenate([a.ravel(), b[np.isfinite(b)]])
  expected = np.bincount(np.digitize(values, limits), minlength=len(limits))
  merged = jax.jit(lambda u, v: summary.histogram_state(u).merge(summary.histogram_state(v)))(a, b)
  np.testing.assert_array_equal(np.asarray(merged.counts), expected)
  assert float(merged.num) == values.size  # NaN and inf are left out
  np.testing.assert_allclose(float(merged.total), values.astype(np.float64).sum(), rtol=1e-5)
  np.testing.assert_allclose(float(merged.total_sq), (values.astype(np.float64) ** 2).sum(),
                             rtol=1e-5)
  assert float(merged.min) == values.min() and float(merged.max) == values.max()
  # Zeros (an empty accumulator) are the identity of merge, also for min and max.
  empty = jax.tree.map(jnp.zeros_like, merged)
  again = empty.merge(merged)
  assert float(again.min) == values.min() and float(again.max) == values.max()


def test_summary_names_and_shapes_are_checked():
  with summary.collecting():
    summary.scalar('a', 1.0)
    with pytest.raises(ValueError, match="'a' is written twice"):
      summary.histogram('a', jnp.ones(3))
    with pytest.raises(ValueError, match='needs a scalar, got shape'):
      summary.scalar('b', jnp.ones(3))
    with pytest.raises(ValueError, match='name must be'):
      summary.scalar('has space', 1.0)
  summary.scalar('outside', 1.0)  # no step collecting: nothing happens (as tf.summary)


# -- train --------------------------------------------------------------------------------------
def test_model_fn_summaries_in_train_at_their_steps(data, model_dir):
  x, y = data
  est = je.Estimator(_summary_model_fn, model_dir, config=je.RunConfig(save_summary_steps=3))
  est.train(_in_order(x, y), steps=7)
  events = _events(model_dir)
  # Every save_summary_steps, and the last step of the call (7 is not a multiple of 3).
  means = _scalars(events, 'data/mean_x0')
  assert [s for s, _ in means] == [3, 6, 7]
  for step, value in means:  # step s trained on batch s - 1 of the in-order input
    np.testing.assert_allclose(value, x[(step - 1) * BATCH:step * BATCH, 0].mean(), rtol=1e-5)
  assert [s for s, _ in _scalars(events, 'loss')] == [3, 6, 7]
  hist = {e.step: e.histogram_value for e in events.Histograms('data/x')}
  assert sorted(hist) == [3, 6, 7]
  batch = x[60:70]
  assert hist[7].num == batch.size
  assert hist[7].min == batch.min() and hist[7].max == batch.max()
  np.testing.assert_allclose(hist[7].sum, batch.astype(np.float64).sum(), rtol=1e-5)
  # A second, short call still writes its last step, to the same open writer.
  est.train(_in_order(x, y), steps=2)
  assert [s for s, _ in _scalars(_events(model_dir), 'data/mean_x0')] == [3, 6, 7, 9]


def test_short_train_writes_at_the_end_even_when_the_input_runs_out(data, model_dir):
  x, y = data
  est = je.Estimator(_summary_model_fn, model_dir, config=je.RunConfig(save_summary_steps=100))
  est.train(_in_order(x[:25], y[:25], num_epochs=1))  # 3 batches, end known in advance
  events = _events(model_dir)
  assert [s for s, _ in _scalars(events, 'loss')] == [3]
  np.testing.assert_allclose(_scalars(events, 'data/mean_x0')[0][1], x[20:25, 0].mean(),
                             rtol=1e-5)

  def generator_input():  # an input whose length nobody knows: the loss is still written
    for i in range(0, 30, BATCH):
      yield {'x': x[i:i + BATCH]}, y[i:i + BATCH]

  est.train(generator_input)
  assert [s for s, _ in _scalars(_events(model_dir), 'loss')] == [3, 6]


# -- evaluate -----------------------------------------------------------------------------------
def test_eval_summaries_are_aggregated_and_written_at_the_global_step(data, model_dir):
  x, y = data
  est = je.Estimator(_summary_model_fn, model_dir)
  est.train(_in_order(x, y), steps=4)
  est.evaluate(je.inputs.numpy_input_fn({'x': x[:35]}, y[:35], batch_size=BATCH, shuffle=False))
  events = _events(est.eval_dir())
  # Scalars: the mean of the per-batch values (batches of 10, 10, 10, 5), as the eval loss.
  per_batch = [x[:35][i:i + BATCH, 0].mean() for i in range(0, 35, BATCH)]
  (step, value), = _scalars(events, 'data/mean_x0')
  assert step == 4
  np.testing.assert_allclose(value, np.mean(per_batch), rtol=1e-5)
  # Histograms: merged over every batch (each example exactly once).
  (hist,) = events.Histograms('data/x')
  assert hist.step == 4 and hist.histogram_value.num == x[:35].size
  assert hist.histogram_value.min == x[:35].min() and hist.histogram_value.max == x[:35].max()
  limits = summary.bucket_limits()
  expected = np.bincount(np.digitize(x[:35].ravel(), limits), minlength=len(limits))
  nonzero = np.flatnonzero(expected)
  np.testing.assert_array_equal(hist.histogram_value.bucket,
                                expected[nonzero[0]:nonzero[-1] + 1])


def test_four_evaluations_within_a_second_give_four_points(data, model_dir):
  x, y = data
  est = je.Estimator(_models.linear_model_fn(), model_dir,
                     config=je.RunConfig(save_checkpoints_steps=1, keep_checkpoint_max=None))
  est.train(_in_order(x, y), steps=4)
  eval_input = _in_order(x, y, num_epochs=1)
  results = [est.evaluate(eval_input, checkpoint_path=os.path.join(model_dir, str(s)))
             for s in (1, 2, 3, 4)]
  # A second Estimator on the same directory writes its own file: nothing is overwritten.
  other = je.Estimator(_models.linear_model_fn(), model_dir)
  results.append(other.evaluate(eval_input))
  acc = _scalars(_events(est.eval_dir()), 'accuracy')
  assert [s for s, _ in acc] == [1, 2, 3, 4, 4]
  np.testing.assert_allclose([v for _, v in acc], [r['accuracy'] for r in results], rtol=1e-6)
  assert len(glob.glob(os.path.join(est.eval_dir(), 'events.out.tfevents.*'))) == 2


def test_summary_name_clashing_with_a_metric_is_an_error(data, model_dir):
  x, y = data

  def model_fn(features, labels, mode):
    logits = nn.Dense(1)(features['x'])[:, 0]
    summary.scalar('accuracy', jnp.mean(logits))
    loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    return EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1), eval_metrics={
        'accuracy': je.metrics.accuracy(labels, (logits > 0).astype(jnp.float32))})

  est = je.Estimator(model_fn, model_dir)
  with pytest.raises(ValueError, match=r"\['accuracy'\] are also eval_metrics names"):
    est.evaluate(_in_order(x, y, num_epochs=1))


# -- canned DNN ---------------------------------------------------------------------------------
@pytest.mark.parametrize('kind', ['dnn', 'wide_and_deep'])
def test_canned_dnn_writes_tf_layer_summaries_in_training(data, model_dir, kind):
  x, y = data
  col = je.columns.numeric_column('x', shape=(4,))
  config = je.RunConfig(save_summary_steps=2, seed=1)
  if kind == 'dnn':
    est = je.DNNClassifier(hidden_units=[6, 3], feature_columns=[col], model_dir=model_dir,
                           config=config)
  else:
    est = je.DNNLinearCombinedClassifier(model_dir=model_dir, linear_feature_columns=[col],
                                         dnn_feature_columns=[col], dnn_hidden_units=[6, 3],
                                         config=config)
  est.train(_in_order(x, y), steps=3)
  names = est.get_variable_names()
  kernel_name = next(n for n in names if n.startswith('params/') and
                     n.endswith('hiddenlayer_0/kernel'))
  kernel = est.get_variable_value(kernel_name)  # step 3's weights: step 4 trains from them
  bias = est.get_variable_value(kernel_name.replace('kernel', 'bias'))
  est.train(_in_order(x, y), steps=1)  # resumes at the 4th batch; step 4 writes summaries
  est.evaluate(_in_order(x, y, num_epochs=1))
  tags = _events(model_dir).Tags()
  for layer in ('hiddenlayer_0', 'hiddenlayer_1', 'logits'):
    assert f'dnn/{layer}/fraction_of_zero_values' in tags['scalars'], tags
    assert f'dnn/{layer}/activation' in tags['histograms'], tags
  # As TF, evaluation writes the metrics and the loss, not the layer summaries (computing them
  # on every eval batch would triple a small network's evaluation time).
  eval_tags = _events(est.eval_dir()).Tags()
  assert not [t for t in eval_tags['scalars'] + eval_tags['histograms'] if 'hiddenlayer' in t]
  assert 'accuracy' in eval_tags['scalars']
  # Step 4's value, recomputed with numpy: relu(x @ W + b) == 0 on the 4th batch.
  want = np.mean(np.maximum(x[3 * BATCH:4 * BATCH] @ kernel + bias, 0) == 0)
  values = dict(_scalars(_events(model_dir), 'dnn/hiddenlayer_0/fraction_of_zero_values'))
  np.testing.assert_allclose(values[4], want, rtol=1e-5)


def test_padding_rows_of_a_short_eval_batch_are_not_counted(data, model_dir):
  x, y = data
  x = np.where(np.abs(x) < 0.5, 0.0, x).astype(np.float32)  # some exact zeros

  def model_fn(features, labels, mode):
    logits = nn.Dense(1)(features['x'])[:, 0]
    mask = je.example_mask()  # padding-aware: the short last batch is padded to 10 rows
    summary.histogram('x', features['x'])
    summary.scalar('zeros', summary.zero_fraction(features['x']))
    per_example = optax.sigmoid_binary_cross_entropy(logits, labels)
    mask = jnp.ones_like(per_example) if mask is None else mask  # None outside a step
    loss = jnp.sum(per_example * mask) / jnp.sum(mask)
    return EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.1))

  est = je.Estimator(model_fn, model_dir)
  est.evaluate(je.inputs.numpy_input_fn({'x': x[:35]}, y[:35], batch_size=BATCH, shuffle=False))
  events = _events(est.eval_dir())
  (hist,) = events.Histograms('x')
  assert hist.histogram_value.num == 35 * 4
  assert hist.histogram_value.min == x[:35].min() and hist.histogram_value.max == x[:35].max()
  per_batch = [np.mean(x[:35][i:i + BATCH] == 0) for i in range(0, 35, BATCH)]
  np.testing.assert_allclose(_scalars(events, 'zeros')[0][1], np.mean(per_batch), rtol=1e-5)


def test_torn_last_eval_record_keeps_the_next_one(tmp_path, caplog):
  """A kill -9 mid-append leaves a line without its newline: the next record stays readable,
  and the torn line is skipped with a warning (issue 24, failed 7)."""
  from jestimator.driver import summaries as summaries_lib
  eval_dir = str(tmp_path)
  summaries_lib.append_eval_results(eval_dir, 10, {'loss': 1.0}, None)
  with open(os.path.join(eval_dir, summaries_lib.EVAL_RESULTS_FILE), 'ab') as f:
    f.write(b'{"global_step": 20, "checkpoint_path": null, "metr')  # torn by a crash
  with caplog.at_level('WARNING', logger='jestimator'):
    summaries_lib.append_eval_results(eval_dir, 30, {'loss': 0.5}, None)
    assert summaries_lib.read_eval_results(eval_dir) == {10: {'loss': 1.0}, 30: {'loss': 0.5}}
  text = caplog.text
  assert 'torn line' in text and 'step 30' in text
  assert 'line 2 is not an evaluation record' in text


def test_events_reach_the_disk_on_a_short_timer(tmp_path):
  """TensorBoard sees a run early: the first write is flushed at once, later ones at most
  `flush_secs` apart, without waiting for train() to end (issue 24)."""
  from jestimator.driver.summaries import SummaryWriter

  def on_disk():
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    return [e.step for e in acc.Scalars('loss')] if 'loss' in acc.Tags()['scalars'] else []

  writer = SummaryWriter(str(tmp_path))
  writer.scalars(1, {'loss': 0.5})
  assert on_disk() == [1]
  writer.scalars(2, {'loss': 0.4})     # within flush_secs of the last flush: buffered
  writer._flushed_at -= writer.flush_secs
  writer.scalars(3, {'loss': 0.3})
  assert on_disk() == [1, 2, 3]
  writer.close()


def test_a_full_disk_at_close_is_a_warning_not_an_exit_traceback(tmp_path, caplog):
  """Issue 24: the writers' cleanup also runs at interpreter exit; ENOSPC there is logged, while
  an explicit flush raises an OSError naming the event directory."""
  import errno
  from jestimator.driver.summaries import SummaryWriter

  class FullDisk:
    def write_event(self, event):
      pass

    def flush(self):
      raise OSError(errno.ENOSPC, 'No space left on device')

    close = flush

  writer = SummaryWriter(str(tmp_path))
  writer._writer = FullDisk()
  with pytest.raises(OSError, match=f"TensorBoard events to {str(tmp_path)!r} failed: No space"):
    writer.flush()
  with caplog.at_level('WARNING', logger='jestimator'):
    writer.close()
  assert 'Could not finish the TensorBoard event file' in caplog.text
  assert 'No space left on device' in caplog.text
