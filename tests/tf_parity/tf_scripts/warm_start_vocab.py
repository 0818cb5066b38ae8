"""Writes ../data/warm_start_vocab.json: TF 2.15's warm start with VocabInfo (row remapping of an
embedding / linear weight when the vocabulary changes), per case: the old variable, the old and
new vocabularies, VocabInfo's arguments and the warm-started value TF produced.

  <tfvenv>/bin/python tests/tf_parity/tf_scripts/warm_start_vocab.py
"""
import json
import os
import tempfile

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tmp = tempfile.mkdtemp()


def vocab_file(name, words):
  path = os.path.join(tmp, name)
  with open(path, 'w') as f:
    f.write(''.join(w + '\n' for w in words))
  return path


OLD = ['apple', 'banana', 'cherry', 'date']
NEW = ['cherry', 'fig', 'apple', 'grape', 'banana']
CASES = [
    dict(name='rows_oov1', old_shape=[5, 2], new_shape=[6, 2], num_oov_buckets=1,
         old_vocab_size=-1, new_vocab_size=5, axis=0),
    dict(name='rows_no_oov', old_shape=[4, 3], new_shape=[5, 3], num_oov_buckets=0,
         old_vocab_size=-1, new_vocab_size=5, axis=0),
    dict(name='old_vocab_size_2', old_shape=[4, 2], new_shape=[5, 2], num_oov_buckets=0,
         old_vocab_size=2, new_vocab_size=5, axis=0),
    dict(name='new_vocab_size_3', old_shape=[4, 2], new_shape=[3, 2], num_oov_buckets=0,
         old_vocab_size=-1, new_vocab_size=3, axis=0),
    dict(name='columns_axis1', old_shape=[2, 4], new_shape=[2, 5], num_oov_buckets=0,
         old_vocab_size=-1, new_vocab_size=5, axis=1),
    dict(name='oov2_backup', old_shape=[6, 2], new_shape=[7, 2], num_oov_buckets=2,
         old_vocab_size=-1, new_vocab_size=5, axis=0),
]
old_vocab, new_vocab = vocab_file('old.txt', OLD), vocab_file('new.txt', NEW)
out = []
for case in CASES:
  old_value = (np.arange(np.prod(case['old_shape']), dtype=np.float32).reshape(case['old_shape'])
               + 10.0)
  ckpt_dir = os.path.join(tmp, case['name'])
  with tf1.Graph().as_default():
    tf1.get_variable('emb', initializer=old_value)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(sess, os.path.join(ckpt_dir, 'model.ckpt'))
  with tf1.Graph().as_default():
    var = tf1.get_variable('emb_new', shape=case['new_shape'],
                           initializer=tf1.zeros_initializer())
    info = tf.estimator.VocabInfo(
        new_vocab=new_vocab, new_vocab_size=case['new_vocab_size'],
        num_oov_buckets=case['num_oov_buckets'], old_vocab=old_vocab,
        old_vocab_size=case['old_vocab_size'],
        backup_initializer=tf1.ones_initializer(), axis=case['axis'])
    tf1.train.warm_start(ckpt_dir, vars_to_warm_start='emb_new',
                         var_name_to_vocab_info={'emb_new': info},
                         var_name_to_prev_var_name={'emb_new': 'emb'})
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      value = sess.run(var)
  out.append({**case, 'old_value': old_value.tolist(), 'value': value.tolist()})
  print(case['name'], value.tolist())
json.dump({'tf_version': tf.__version__, 'old_vocab': OLD, 'new_vocab': NEW,
           'backup_value': 1.0, 'cases': out},
          open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                            'warm_start_vocab.json'), 'w'), indent=1)
