"""The sharded-state checks on 8 fake CPU devices, run once in one process (started by
test_sharded.py as `python _sharded_worker.py OUT.json MP_REF_DIR` with
XLA_FLAGS=--xla_force_host_platform_device_count=8). Writes differences, placements, byte counts
and error messages as JSON; the assertions live in the test module.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import traceback

import jax
import numpy as np

import jestimator as je
from jestimator import distributed as jd
from jestimator.hooks import Hook

import _sharded_models as m

assert jax.device_count() == 8, jax.devices()
OUT, MP_REF = sys.argv[1], sys.argv[2]
RESULTS: dict = {'errors': {}}
ROOT = tempfile.mkdtemp(prefix='jestimator_sharded_')


class Losses(Hook):
  def __init__(self):
    self.values = []

  def before_step(self, ctx):
    return ['loss']

  def after_step(self, ctx, values):
    self.values.append(float(values['loss']))


def check(fn):
  try:
    RESULTS[fn.__name__] = fn()
  except Exception:  # noqa: BLE001 - reported by the test naming the check
    RESULTS['errors'][fn.__name__] = traceback.format_exc()
  return fn


def sharded(devices=None):
  return jd.DataParallel(devices=devices, partitioner=m.PARTITIONER)


def flat(tree) -> dict:
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in
          jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def max_diff(a: dict, b: dict) -> float:
  assert sorted(a) == sorted(b), (sorted(a), sorted(b))
  return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def first_batch(est):
  source = est.input_pipeline.open(m.train_input_fn(), je.ModeKeys.TRAIN)
  try:
    return source.first('test')
  finally:
    source.close()


def _custom(model_dir, strategy):
  return je.Estimator(m.adam_model_fn, model_dir, config=je.RunConfig(strategy=strategy, seed=5))


def _batch(est):
  b = first_batch(est)
  return b.features, b.labels


def _restored(est):
  """The state a new train() of `est` would start from (its latest checkpoint)."""
  checkpoints = est.state_store.training()
  try:
    return checkpoints.train_state(*_batch(est))
  finally:
    checkpoints.close()


def trained(name, strategy, factory=m.wide_deep, input_fn=None, steps=20):
  d = os.path.join(ROOT, name)
  est = factory(d, strategy)
  losses = Losses()
  est.train(input_fn or m.train_input_fn(), hooks=[losses], max_steps=steps)
  return est, losses.values


def placement_of(state) -> dict:
  """Per leaf of params and opt_state: its spec and the rows of device 0's shard."""
  out = {}
  for path, a in jax.tree_util.tree_flatten_with_path(state.params)[0] + \
      jax.tree_util.tree_flatten_with_path(state.opt_state)[0]:
    if a.ndim:
      out[jax.tree_util.keystr(path)] = {'spec': str(a.sharding.spec), 'shape': list(a.shape),
                                          'shard_rows': int(a.addressable_shards[0].data.shape[0])}
  return out


@check
def eq():
  """20 canned wide & deep steps, sharded against replicated DataParallel; their placements."""
  rep, rep_losses = trained('eq_rep', jd.DataParallel())
  sh, sh_losses = trained('eq_sh', sharded())
  out = {'loss_diff': float(np.max(np.abs(np.subtract(rep_losses, sh_losses)))),
         'steps': len(sh_losses),
         'param_diff': max_diff(flat(rep.state_store.newest.params),
                                flat(sh.state_store.newest.params)),
         'slot_diff': max_diff(flat(rep.state_store.newest.opt_state),
                               flat(sh.state_store.newest.opt_state)),
         'placement': placement_of(sh.state_store.newest),
         'eval_diff': max(abs(rep.evaluate(m.eval_input_fn())[k] -
                              sh.evaluate(m.eval_input_fn())[k]) for k in ('loss', 'auc')),
         'vars': {k: sh.get_variable_value(k).tolist() for k in sh.get_variable_names()}}
  # Adam inside masked inside MultiSteps: the table's moments and MultiSteps' gradient sums
  # follow the table.
  arep, arep_losses = trained('adam_rep', jd.DataParallel(), _custom, m.adam_input_fn)
  ash, ash_losses = trained('adam_sh', sharded(), _custom, m.adam_input_fn)
  out['adam'] = {'loss_diff': float(np.max(np.abs(np.subtract(arep_losses, ash_losses)))),
                 'param_diff': max_diff(flat(arep.state_store.newest.params),
                                        flat(ash.state_store.newest.params)),
                 'slot_diff': max_diff(flat(arep.state_store.newest.opt_state),
                                       flat(ash.state_store.newest.opt_state)),
                 'placement': placement_of(ash.state_store.newest)}
  return out


@check
def init():
  """The sharded initial state against one device's, and the initialiser's per-device bytes."""
  one = m.wide_deep(os.path.join(ROOT, 'init_one'), jd.SingleDevice())
  sh = m.wide_deep(os.path.join(ROOT, 'init_sh'), sharded())
  batch = first_batch(one)
  ref = one.compiled_model.create_train_state(batch.features, batch.labels)
  got = sh.compiled_model.create_train_state(batch.features, batch.labels)
  a, b = flat(ref), flat(got)
  program_one = one.compiled_model.state_program(batch.features, batch.labels)
  program_sh = sh.compiled_model.state_program(batch.features, batch.labels)

  def bytes_of(program):
    stats = program.lower(batch.features, batch.labels).compile().memory_analysis()
    return int(stats.output_size_in_bytes + stats.temp_size_in_bytes)

  return {'identical': sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a),
          'leaves': len(a), 'placement': placement_of(got),
          'bytes_one': bytes_of(program_one), 'bytes_sharded': bytes_of(program_sh)}


@check
def ckpt():
  """Save on 8 devices; restore on 4 and on 1; 10 steps + restart + 10 against 20 straight."""
  d = os.path.join(ROOT, 'ckpt')
  m.wide_deep(d, sharded()).train(m.train_input_fn(), max_steps=10)
  est = m.wide_deep(d, sharded())  # a new Estimator: restores the sharded checkpoint
  est.train(m.train_input_fn(10), max_steps=20)
  straight = flat(_restored(m.wide_deep(os.path.join(ROOT, 'eq_sh'), sharded())))
  resumed = flat(_restored(est))
  saved = {k: est.get_variable_value(k) for k in est.get_variable_names() if k != 'global_step'}
  out = {'resume_diff': max_diff(straight, resumed)}
  for name, strategy in (('on4', sharded(jax.devices()[:4])), ('on1', jd.SingleDevice())):
    other = m.wide_deep(d, strategy)
    variables, step, _ = other.state_store.variables_for(*_batch(other), je.ModeKeys.EVAL)
    restored = {'params/' + k[2:-2].replace("']['", '/'): v
                for k, v in flat(variables['params']).items()}
    table = variables['params']['dnn']['input_layer']['C0_embedding']['embedding_weights']
    out[name] = {'step': step, 'identical': sorted(restored) == sorted(saved) and all(
        np.array_equal(restored[k], saved[k]) for k in saved),
        'table_shard_rows': int(table.addressable_shards[0].data.shape[0]),
        'eval': other.evaluate(m.eval_input_fn())['loss']}
  out['eval8'] = est.evaluate(m.eval_input_fn())['loss']
  # Warm start from the sharded checkpoint: the fresh state holds its values, sharded.
  warm = m.wide_deep(os.path.join(ROOT, 'warm'), sharded(), warm_start_from=d)
  state = warm.compiled_model.create_train_state(*_batch(warm), warm.state_store.warm_start)
  table = state.params['dnn']['input_layer']['C0_embedding']['embedding_weights']
  warmed = {'params/' + k[2:-2].replace("']['", '/'): v for k, v in flat(state.params).items()}
  out['warm'] = {'identical': all(np.array_equal(warmed[k], saved[k]) for k in saved),
                 'table_shard_rows': int(table.addressable_shards[0].data.shape[0]),
                 'slot_shard_rows': [int(a.addressable_shards[0].data.shape[0]) for a in
                                     jax.tree.leaves(state.opt_state) if a.ndim == 2 and
                                     a.shape[0] == m.BUCKETS]}
  # Export gathers the sharded tables into the artifact; the loaded model predicts as est does.
  from jestimator import serving
  served = serving.load(est.export_saved_model(os.path.join(ROOT, 'export')))
  rows = {k: v[:8] for k, v in m.X.items()}
  got = served.predict(rows, signature='predict')['probabilities']
  want = [p['probabilities'] for p in est.predict(
      lambda: iter([{k: v for k, v in rows.items()}]))]
  out['export_diff'] = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want))))
  return out


@check
def comm():
  """Collectives of the compiled train step, sharded and replicated."""
  out = {}
  for name, strategy in (('sharded', sharded()), ('replicated', jd.DataParallel())):
    est = m.wide_deep(os.path.join(ROOT, 'comm_' + name), strategy)
    b = first_batch(est)
    compiled = est.compiled_model
    state = strategy.abstract(compiled.abstract_train_state(b.features, b.labels))
    mask = strategy.abstract_batch(jax.ShapeDtypeStruct((m.GLOBAL_BATCH,), np.float32))
    text = compiled.train_step().lower(
        state, strategy.abstract_batch(jax.tree.map(np.asarray, b.features)),
        strategy.abstract_batch(np.asarray(b.labels)), mask).compile().as_text()
    ops = []
    for line in text.splitlines():
      op = re.search(r'\b(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)'
                     r'(-start)?\(', line)
      if op:
        shapes = [[int(d) for d in dims.split(',') if d]
                  for dims in re.findall(r'[a-z]\d*\[([\d,]*)\]', line.split('=', 1)[1])]
        ops.append({'op': op.group(1), 'shapes': shapes})
    out[name] = ops
  return out


@check
def err():
  """An indivisible table, a doubly matched regex, and a plan larger than the device."""
  out = {}
  d = os.path.join(ROOT, 'err_indivisible')
  try:
    m.wide_deep(d, sharded(), buckets=1001).train(m.train_input_fn(), max_steps=2)
    out['indivisible'] = None
  except ValueError as e:
    out['indivisible'] = str(e)
  out['indivisible_wrote'] = os.path.isdir(d) and any(x.isdigit() for x in os.listdir(d))
  regex = jd.DataParallel(partitioner=jd.RegexPartitioner(
      [(r'embedding_weights$', ('data', None)), (r'C0_embedding', ('data', None))]))
  try:
    m.wide_deep(os.path.join(ROOT, 'err_regex'), regex).train(m.train_input_fn(), max_steps=2)
    out['regex'] = None
  except ValueError as e:
    out['regex'] = str(e)
  d = os.path.join(ROOT, 'err_memory')
  # Replicated, the tables need ~110 KiB per device: a 64 KiB device cannot hold them.
  try:
    m.wide_deep(d, jd.DataParallel(), device_memory_bytes=64 << 10).train(m.train_input_fn(),
                                                                         max_steps=2)
    out['memory'] = None
  except ValueError as e:
    out['memory'] = str(e)
  out['memory_wrote'] = os.path.isdir(d) and any(x.isdigit() for x in os.listdir(d))
  # Sharded, the same limit is enough for this small model? The plan says; it trains if so.
  plan = m.wide_deep(os.path.join(ROOT, 'err_plan'), sharded(),
                     device_memory_bytes=1 << 30).memory_plan(m.train_input_fn())
  out['plan_fits'] = plan.fits
  out['plan_summary'] = plan.summary()
  return out


@check
def mp_reference():
  """The 1 process x 8 devices run the 2-process test compares with (10 + restart + 10)."""
  shutil.rmtree(MP_REF, ignore_errors=True)
  m.wide_deep(MP_REF, sharded()).train(m.train_input_fn(), max_steps=10)
  est = m.wide_deep(MP_REF, sharded())
  est.train(m.train_input_fn(10), max_steps=20)
  plan = est.memory_plan(m.train_input_fn())
  return {'vars': {k: est.get_variable_value(k).tolist() for k in est.get_variable_names()},
          'plan': {'state_bytes': plan.state_bytes, 'batch_bytes': plan.batch_bytes}}


shutil.rmtree(ROOT, ignore_errors=True)
with open(OUT, 'w') as f:
  json.dump(RESULTS, f)
