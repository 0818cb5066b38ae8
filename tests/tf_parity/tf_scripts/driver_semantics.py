"""TF 2.15 behaviour of the Estimator driver cases of issue 22 -> data/driver_semantics.json.

Run with the TF venv (never a jestimator dependency):
  /work/tfvenv/bin/python tests/tf_parity/tf_scripts/driver_semantics.py

Each section records what TF did: `params` copies seen by the model_fn, checkpoint steps left by
`train`, `CheckpointSaverListener` events, whether `save_summary_steps=0` writes training
summaries, `RunConfig` validation errors (type and message), the early-stopping hooks' decisions
on eval histories, and the error types of item 10.
"""
import json
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_estimator as tfe  # noqa: F401

est_lib = tf.estimator
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                   'driver_semantics.json')


def input_fn():
  x = np.arange(8, dtype=np.float32).reshape(8, 1)
  return tf.data.Dataset.from_tensor_slices(({'x': x}, x[:, 0] * 2.0)).repeat().batch(4)


def ckpt_steps(model_dir):
  state = tf.train.get_checkpoint_state(model_dir)
  return sorted(int(p.rsplit('-', 1)[1]) for p in state.all_model_checkpoint_paths)


def simple_model_fn(features, labels, mode):
  w = tf.compat.v1.get_variable('w', [1, 1])
  pred = tf.matmul(features['x'], w)[:, 0]
  if mode == est_lib.ModeKeys.PREDICT:
    return est_lib.EstimatorSpec(mode, predictions={'y': pred})
  loss = tf.reduce_mean(tf.square(pred - labels))
  train_op = tf.compat.v1.train.GradientDescentOptimizer(0.01).minimize(
      loss, global_step=tf.compat.v1.train.get_global_step())
  return est_lib.EstimatorSpec(mode, loss=loss, train_op=train_op)


class Listener(tf.compat.v1.train.CheckpointSaverListener):

  def __init__(self):
    self.events = []

  def before_save(self, session, step):
    self.events.append(['before_save', int(step)])

  def after_save(self, session, step):
    self.events.append(['after_save', int(step)])


def error_of(fn):
  try:
    fn()
  except Exception as e:  # noqa: BLE001
    return [type(e).__name__, str(e)]
  return None


def params_seen_case():
  # A model_fn that mutates its params, recording what each call (train, eval, predict) saw.
  seen = []

  def fn(features, labels, mode, params):
    seen.append(list(params['l']))
    params['l'].append(1)
    return simple_model_fn(features, labels, mode)

  est = est_lib.Estimator(fn, model_dir=tempfile.mkdtemp(), params={'l': []})
  est.train(input_fn, steps=1)
  est.evaluate(input_fn, steps=1)
  next(est.predict(lambda: input_fn().map(lambda f, l: f)))
  return {'seen': seen, 'est_params': est.params}


def checkpoint_cases():
  out = {}
  d = tempfile.mkdtemp()
  est_lib.Estimator(simple_model_fn, model_dir=d).train(input_fn, steps=5)
  out['train_steps_5_default_config'] = ckpt_steps(d)
  d = tempfile.mkdtemp()
  est = est_lib.Estimator(simple_model_fn, model_dir=d,
                          config=est_lib.RunConfig(save_checkpoints_steps=3))
  first = Listener()
  est.train(input_fn, steps=7, saving_listeners=[first])
  out['steps_3_train_7_events'] = first.events
  out['steps_3_train_7_ckpts'] = ckpt_steps(d)
  again = Listener()
  est.train(input_fn, steps=2, saving_listeners=[again])
  out['steps_3_resume_2_events'] = again.events
  out['steps_3_resume_2_ckpts'] = ckpt_steps(d)
  return out


def summary_tags(d):
  tags = set()
  for f in tf.io.gfile.glob(os.path.join(d, 'events.out.tfevents.*')):
    for e in tf.compat.v1.train.summary_iterator(f):
      for v in e.summary.value:
        tags.add(v.tag)
  return sorted(tags)


def summary_cases():
  out = {}
  for steps in (0, None, 2):
    d = tempfile.mkdtemp()
    est = est_lib.Estimator(simple_model_fn, model_dir=d,
                            config=est_lib.RunConfig(save_summary_steps=steps,
                                                     log_step_count_steps=2))
    est.train(input_fn, steps=5)
    out[str(steps)] = summary_tags(d)
  return out


RUN_CONFIG_CASES = {
    'save_checkpoints_secs=-1': dict(save_checkpoints_secs=-1),
    'save_checkpoints_steps=-1': dict(save_checkpoints_steps=-1),
    'save_checkpoints_steps=0': dict(save_checkpoints_steps=0),
    'save_checkpoints_secs=0': dict(save_checkpoints_secs=0),
    'tf_random_seed=1.5': dict(tf_random_seed=1.5),
    "tf_random_seed='1'": dict(tf_random_seed='1'),
    'tf_random_seed=7': dict(tf_random_seed=7),
    'keep_checkpoint_max=-1': dict(keep_checkpoint_max=-1),
    'keep_checkpoint_max=0': dict(keep_checkpoint_max=0),
    'keep_checkpoint_max=None': dict(keep_checkpoint_max=None),
    'save_summary_steps=0': dict(save_summary_steps=0),
    'save_summary_steps=None': dict(save_summary_steps=None),
    'save_summary_steps=-1': dict(save_summary_steps=-1),
    'log_step_count_steps=0': dict(log_step_count_steps=0),
    'log_step_count_steps=None': dict(log_step_count_steps=None),
    'model_dir=""': dict(model_dir=''),
    'both checkpoint cadences': dict(save_checkpoints_steps=1, save_checkpoints_secs=1),
}


def run_config_cases():
  out = {}
  for name, kwargs in RUN_CONFIG_CASES.items():
    out[name] = error_of(lambda: est_lib.RunConfig(**kwargs))
  # What the accepted zero cadences do: checkpoints left by train(steps=5).
  for name in ('save_checkpoints_steps=0', 'save_checkpoints_secs=0'):
    d = tempfile.mkdtemp()
    est_lib.Estimator(simple_model_fn, model_dir=d,
                      config=est_lib.RunConfig(**RUN_CONFIG_CASES[name])).train(input_fn, steps=5)
    state = tf.train.get_checkpoint_state(d)
    out[name + ' ckpts'] = [] if state is None else ckpt_steps(d)
  return out


def write_evals(eval_dir, name, history):
  with tf.Graph().as_default():  # the v1 FileWriter (as Estimator.evaluate's) needs graph mode
    writer = tf.compat.v1.summary.FileWriter(eval_dir)
    for step, value in history:
      summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=name,
                                                                       simple_value=value)])
      writer.add_summary(summary, step)
    writer.close()


# (hook, metric, history [(step, value)], kwargs): TF's early_stopping_test.py cases and the
# issue's (both stated in the test file).
EARLY_STOPPING_CASES = {
    'higher_any_eval': ('stop_if_higher_hook', 'accuracy',
                        [(1000, 0.5), (2000, 0.6), (3000, 0.7), (4000, 0.68)],
                        dict(threshold=0.69)),
    'higher_not_reached': ('stop_if_higher_hook', 'accuracy',
                           [(1000, 0.5), (2000, 0.6), (3000, 0.68)], dict(threshold=0.69)),
    'higher_before_min_steps': ('stop_if_higher_hook', 'accuracy',
                                [(1000, 0.8), (2000, 0.6), (3000, 0.68)],
                                dict(threshold=0.69, min_steps=2000)),
    'lower_any_eval': ('stop_if_lower_hook', 'loss',
                       [(1000, 0.7), (2000, 0.6), (3000, 0.3), (4000, 0.4)],
                       dict(threshold=0.35)),
    'lower_before_min_steps': ('stop_if_lower_hook', 'loss',
                               [(1000, 0.1), (2000, 0.6), (3000, 0.5)],
                               dict(threshold=0.35, min_steps=2000)),
    'no_decrease_ignores_before_min_steps': (
        'stop_if_no_decrease_hook', 'loss',
        [(1000, 0.3), (2000, 0.7), (3000, 0.6), (3500, 0.5)],
        dict(max_steps_without_decrease=1000, min_steps=2000)),
    'no_decrease_window_in_history': (
        'stop_if_no_decrease_hook', 'loss',
        [(1000, 0.5), (2000, 0.6), (3000, 0.7), (3500, 0.4)],
        dict(max_steps_without_decrease=1500)),
    'no_decrease_not_yet': ('stop_if_no_decrease_hook', 'loss',
                            [(1000, 0.5), (2000, 0.6), (2400, 0.7), (3000, 0.4)],
                            dict(max_steps_without_decrease=1500)),
    'no_increase_ignores_before_min_steps': (
        'stop_if_no_increase_hook', 'accuracy',
        [(1000, 0.9), (2000, 0.5), (3000, 0.6), (3500, 0.7)],
        dict(max_steps_without_increase=1000, min_steps=2000)),
    'no_increase_window_in_history': (
        'stop_if_no_increase_hook', 'accuracy',
        [(1000, 0.7), (2000, 0.6), (3000, 0.5), (3500, 0.8)],
        dict(max_steps_without_increase=1500)),
}


def early_stopping_cases():
  out = {}
  for name, (hook_name, metric, history, kwargs) in EARLY_STOPPING_CASES.items():
    d = tempfile.mkdtemp()
    est = est_lib.Estimator(simple_model_fn, model_dir=d)
    write_evals(est.eval_dir(), metric, history)
    hook = getattr(est_lib.experimental, hook_name)(est, metric, **kwargs)
    out[name] = bool(hook._should_stop_fn())
  return out


def error_type_cases():
  est = est_lib.Estimator(simple_model_fn, model_dir=tempfile.mkdtemp())

  class NoneNameExporter(est_lib.Exporter):
    name = None

    def export(self, *args):
      return None

  def bad_model_fn(features, labels, mode):
    return {'loss': 0.0}

  return {
      'model_fn returns a dict': error_of(
          lambda: est_lib.Estimator(bad_model_fn, model_dir=tempfile.mkdtemp()).train(
              input_fn, steps=1)),
      'EvalSpec(name=123)': error_of(lambda: est_lib.EvalSpec(input_fn, name=123)),
      'EvalSpec(exporters=exporter named None)': error_of(
          lambda: est_lib.EvalSpec(input_fn, exporters=[NoneNameExporter()])),
      'make_early_stopping_hook(object())': error_of(
          lambda: est_lib.experimental.make_early_stopping_hook(object(), lambda: False)),
      'make_early_stopping_hook(both cadences)': error_of(
          lambda: est_lib.experimental.make_early_stopping_hook(
              est, lambda: False, run_every_secs=60, run_every_steps=10)),
  }


def main():
  result = {
      'tf_version': tf.__version__,
      'params': params_seen_case(),
      'checkpoints': checkpoint_cases(),
      'summary_tags_by_save_summary_steps': summary_cases(),
      'run_config': run_config_cases(),
      'early_stopping': early_stopping_cases(),
      'error_types': error_type_cases(),
  }
  with open(OUT, 'w') as f:
    json.dump(result, f, indent=1, sort_keys=True)
    f.write('\n')
  print(json.dumps(result, indent=1, sort_keys=True))
  return 0


if __name__ == '__main__':
  sys.exit(main())
