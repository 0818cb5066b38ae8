"""Generates tests/tf_parity/data/feature_columns_cases.json with TF 2.15 (run in /work/tfvenv).

    /work/tfvenv/bin/python tests/tf_parity/tf_scripts/feature_columns_cases.py

Cases where TF's own tests pin no number: weighted embeddings with weights <= 0 under each combiner
(and max_norm), weighted indicators, `linear_model` with negative weights under each
`sparse_combiner`, multivalent crosses, sparse inputs (an identity column fed -1, '' as a hashed
value, rank-2 and rank-3 sparse inputs to sequence columns), and which constructor arguments TF
refuses. Every input is stored as TF's SparseTensor parts or as a dense list, so the test can feed
jestimator the same values.
"""
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel('ERROR')
fc = tf.feature_column
v1 = tf.compat.v1
OUT = os.path.join(os.path.dirname(__file__), '..', 'data', 'feature_columns_cases.json')
TABLE = [[1., 2.], [3., 5.], [7., 11.]]


def sparse(indices, values, dense_shape):
  return {'sparse': {'indices': indices, 'values': values, 'dense_shape': dense_shape}}


def to_tf(v):
  if isinstance(v, dict) and 'sparse' in v:
    s = v['sparse']
    vals = s['values']
    dtype = tf.string if vals and isinstance(vals[0], str) else (
        tf.float32 if vals and isinstance(vals[0], float) else tf.int64)
    return tf.SparseTensor(np.array(s['indices'], np.int64).reshape(-1, len(s['dense_shape'])),
                           tf.constant(vals, dtype), s['dense_shape'])
  return tf.constant(v)


def const_init(values):
  return tf.constant_initializer(np.array(values, np.float32))


# The weighted ids of the combiner cases: weights <= 0 in rows 0, 1 and 2, an empty row 3.
W_IDS = sparse([[0, 0], [0, 1], [1, 0], [2, 0], [2, 1], [2, 2]], [2, 1, 0, 1, 2, 0], [4, 3])
W_WTS = sparse([[0, 0], [0, 1], [1, 0], [2, 0], [2, 1], [2, 2]], [3., -1., 0., .5, 2., -2.],
               [4, 3])


def dense_case(name, make_cols, features):
  cols = make_cols()
  out = tf.keras.layers.DenseFeatures(cols)({k: to_tf(v) for k, v in features.items()})
  return {'name': name, 'features': features, 'expected': out.numpy().tolist()}


def weighted(key='ids'):
  return fc.weighted_categorical_column(fc.categorical_column_with_identity(key, 3), 'w')


def dense_cases():
  feats = {'ids': W_IDS, 'w': W_WTS}
  out = []
  for comb in ('sum', 'mean', 'sqrtn'):
    out.append(dict(dense_case(f'weighted_embedding_{comb}', lambda c=comb: [fc.embedding_column(
        weighted(), 2, combiner=c, initializer=const_init(TABLE))], feats),
        combiner=comb, table=TABLE))
    out.append(dict(dense_case(f'weighted_embedding_{comb}_max_norm', lambda c=comb: [
        fc.embedding_column(weighted(), 2, combiner=c, initializer=const_init(TABLE),
                            max_norm=4.0)], feats), combiner=comb, table=TABLE, max_norm=4.0))
  out.append(dense_case('weighted_indicator', lambda: [fc.indicator_column(weighted())], feats))
  out.append(dense_case('identity_sparse_minus_one_default', lambda: [fc.indicator_column(
      fc.categorical_column_with_identity('i', 4, default_value=3))],
      {'i': sparse([[0, 0], [1, 0], [1, 1]], [-1, 2, 5], [2, 2])}))
  out.append(dense_case('identity_sparse_minus_one_no_default', lambda: [fc.indicator_column(
      fc.categorical_column_with_identity('i', 4))],
      {'i': sparse([[0, 0], [1, 0]], [-1, 2], [2, 2])}))
  out.append(dense_case('hash_sparse_empty_string', lambda: [fc.indicator_column(
      fc.categorical_column_with_hash_bucket('s', 5))],
      {'s': sparse([[0, 0], [1, 1]], ['', 'a'], [2, 2])}))
  out.append(dense_case('hash_dense_empty_string', lambda: [fc.indicator_column(
      fc.categorical_column_with_hash_bucket('s', 5))], {'s': [[''], ['a']]}))
  out.append(dense_case('crossed_multivalent', lambda: [fc.indicator_column(
      fc.crossed_column(['a', 'b'], 10))],
      {'a': sparse([[0, 0], [0, 1], [1, 0]], ['x', 'y', 'z'], [2, 2]),
       'b': sparse([[0, 0], [1, 0], [1, 1]], ['p', 'q', 'r'], [2, 2])}))
  out.append(dense_case('vocabulary_default_negative', lambda: [fc.indicator_column(
      fc.categorical_column_with_vocabulary_list('v', ['x', 'y'], default_value=-100))],
      {'v': [['x', 'z'], ['q', 'y']]}))
  out.append(dense_case('hash_one_bucket', lambda: [fc.indicator_column(
      fc.categorical_column_with_hash_bucket('s', 1))], {'s': [['x'], ['y']]}))
  out.append(dict(dense_case('embedding_sparse_gaps_mean', lambda: [fc.embedding_column(
      fc.categorical_column_with_identity('ids', 3), 2, initializer=const_init(TABLE))],
      {'ids': sparse([[0, 0], [1, 0], [1, 4], [3, 0]], [2, 0, 1, 1], [4, 5])}),
      combiner='mean', table=TABLE))
  return out


def linear_cases():
  out = []
  wts = [[10.], [100.], [1000.], [10000.]]
  feats = {'wire_cast': sparse([[0, 0], [1, 0], [1, 1]], ['omar', 'stringer', 'marlo'], [2, 2]),
           'weights': sparse([[0, 0], [1, 0], [1, 1]], [1., 1., -1.], [2, 2])}
  for comb in ('sum', 'mean', 'sqrtn'):
    with tf.Graph().as_default():
      col = v1.feature_column.weighted_categorical_column(
          v1.feature_column.categorical_column_with_hash_bucket('wire_cast', 4), 'weights')
      pred = v1.feature_column.linear_model({k: to_tf(v) for k, v in feats.items()}, [col],
                                            sparse_combiner=comb)
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        var = [v for v in v1.global_variables() if 'weights' in v.name and 'bias' not in v.name][0]
        bias = [v for v in v1.global_variables() if 'bias' in v.name][0]
        sess.run([var.assign(wts), bias.assign([5.])])
        got = sess.run(pred)
    out.append({'name': f'linear_negative_weights_{comb}', 'sparse_combiner': comb,
                'features': feats, 'weights': wts, 'bias': [5.], 'variable': var.name,
                'expected': got.tolist()})
  return out


SEQ_A = [[1., 2.], [3., 4.], [5., 6.]]


def sequence_cases():
  out = []
  inputs = {
      'rank2_gaps': sparse([[0, 0], [0, 2], [1, 1]], [2, 1, 0], [2, 3]),
      'rank3': sparse([[0, 0, 0], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0]],
                      [2, 0, 1, 0, 0, 1], [2, 2, 2]),
      'rank3_gap': sparse([[0, 0, 0], [0, 2, 0], [0, 2, 1], [1, 1, 0]], [2, 0, 1, 1], [2, 3, 2]),
  }
  for name, x in inputs.items():
    for comb in ('mean', 'sum'):
      col = fc.embedding_column(fc.sequence_categorical_column_with_identity('s', 3), 2,
                                combiner=comb, initializer=const_init(SEQ_A))
      seq, length = tf.keras.experimental.SequenceFeatures([col])({'s': to_tf(x)})
      out.append({'name': f'sequence_embedding_{name}_{comb}', 'kind': 'embedding',
                  'combiner': comb, 'table': SEQ_A, 'features': {'s': x},
                  'expected': seq.numpy().tolist(), 'expected_length': length.numpy().tolist()})
    col = fc.indicator_column(fc.sequence_categorical_column_with_identity('s', 3))
    seq, length = tf.keras.experimental.SequenceFeatures([col])({'s': to_tf(x)})
    out.append({'name': f'sequence_indicator_{name}', 'kind': 'indicator', 'features': {'s': x},
                'expected': seq.numpy().tolist(), 'expected_length': length.numpy().tolist()})
  return out


def refusals():
  """Which constructor calls TF refuses, and with which error class."""
  vocab_file = os.path.join(os.path.dirname(OUT), 'fc_vocab_tmp.txt')
  with open(vocab_file, 'w') as f:
    f.write('x\ny\n')
  calls = {
      'weighted_dtype_none': lambda: fc.weighted_categorical_column(
          fc.categorical_column_with_identity('a', 3), 'w', dtype=None),
      'numeric_shape_float': lambda: fc.numeric_column('a', shape=[1.0]),
      'numeric_int32_default_2_5': lambda: fc.numeric_column('a', dtype=tf.int32,
                                                             default_value=2.5),
      'numeric_int32_default_2_0': lambda: fc.numeric_column('a', dtype=tf.int32,
                                                             default_value=2.0),
      'sequence_numeric_shape_float': lambda: fc.sequence_numeric_column('a', shape=[1.0]),
      'bucketized_rank2_source': lambda: fc.bucketized_column(
          fc.numeric_column('a', shape=[2, 2]), [0., 1.]),
      'hash_bucket_size_1': lambda: fc.categorical_column_with_hash_bucket('a', 1),
      'vocabulary_list_default_minus_100': lambda: fc.categorical_column_with_vocabulary_list(
          'a', ['x', 'y'], default_value=-100),
      'vocabulary_file_default_minus_100': lambda: fc.categorical_column_with_vocabulary_file(
          'a', vocab_file, default_value=-100),
      'vocabulary_list_float_values': lambda: fc.categorical_column_with_vocabulary_list(
          'a', [1.0, 2.0]),
      'hash_bucket_float_dtype': lambda: fc.categorical_column_with_hash_bucket(
          'a', 10, dtype=tf.float32),
      'weighted_string_dtype': lambda: fc.weighted_categorical_column(
          fc.categorical_column_with_identity('a', 3), 'w', dtype=tf.string),
      'embedding_initializer_not_callable': lambda: fc.embedding_column(
          fc.categorical_column_with_identity('a', 3), 2, initializer='zeros'),
      'numeric_string_dtype': lambda: fc.numeric_column('a', dtype=tf.string),
  }
  out = {}
  for name, call in calls.items():
    try:
      call()
      out[name] = 'accepted'
    except Exception as e:  # noqa: BLE001 - the class is the finding
      out[name] = type(e).__name__
  with tf.Graph().as_default():
    try:
      v1.feature_column.shared_embedding_columns(
          [v1.feature_column.categorical_column_with_identity('a', 3),
           v1.feature_column.categorical_column_with_hash_bucket('b', 3)], 2)
      out['shared_identity_and_hashed'] = 'accepted'
    except Exception as e:  # noqa: BLE001
      out['shared_identity_and_hashed'] = type(e).__name__
  os.remove(vocab_file)
  return out


def main():
  doc = {'tf_version': tf.__version__, 'dense_features': dense_cases(),
         'linear_model': linear_cases(), 'sequence_features': sequence_cases(),
         'refusals': refusals()}
  with open(OUT, 'w') as f:
    json.dump(doc, f, indent=1)
    f.write('\n')
  print('wrote', os.path.abspath(OUT), file=sys.stderr)


if __name__ == '__main__':
  main()
