"""The legacy 64-bit fingerprint and crossing hash (TF's hashing: test_tf_hashing.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

import jestimator.columns as fc
from jestimator.columns import hashing, keys

from . import _reference as ref

STRINGS = ['', 'a', 'ab', 'abc', 'Married-civ-spouse', 'Outlying-US(Guam-USVI-etc)', 'héllo',
           '日本語テキスト', 'emoji 🙂 ok', 'x' * 301, 'United-States', ' lead', 'trail ']


def test_matches_reference_for_mixed_lengths():
  got = fc.fingerprint_strings(np.array(STRINGS), 'legacy')
  assert got.dtype == np.uint64
  assert [int(v) for v in got] == [ref.fingerprint(s) for s in STRINGS]


def test_padding_width_does_not_change_a_fingerprint():
  alone = fc.fingerprint_strings(np.array(['abc']), 'legacy')[0]       # dtype <U3
  padded = fc.fingerprint_strings(np.array(['abc', 'x' * 40]), 'legacy')[0]  # dtype <U40
  wide = fc.fingerprint_strings(np.array(['abc'], dtype='<U7'), 'legacy')[0]
  assert alone == padded == wide == ref.fingerprint('abc')


def test_bytes_object_and_2d_inputs_agree_with_str():
  u = fc.fingerprint_strings(np.array(STRINGS), 'legacy')
  b = fc.fingerprint_strings(np.array([s.encode('utf-8') for s in STRINGS]), 'legacy')
  np.testing.assert_array_equal(u, b)
  two_d = fc.fingerprint_strings(np.array(STRINGS[:12]).reshape(3, 4), 'legacy')
  np.testing.assert_array_equal(two_d.reshape(-1), u[:12])


def test_long_batches_cross_chunk_boundaries():
  rng = np.random.default_rng(0)
  words = np.array([''.join(rng.choice(list('abcdefgh'), size=int(n)))
                    for n in rng.integers(1, 12, 5000)])
  got = fc.fingerprint_strings(words, 'legacy')
  sample = rng.choice(5000, 50, replace=False)
  assert [int(got[i]) for i in sample] == [ref.fingerprint(str(words[i])) for i in sample]


def test_ints_hash_as_decimal_strings():
  vals = np.array([0, 7, 42, -3, 10 ** 12])
  got = fc.fingerprint_ints(vals, 'legacy')
  assert [int(v) for v in got] == [ref.fingerprint(str(v)) for v in vals.tolist()]
  np.testing.assert_array_equal(got, fc.fingerprint_strings(
      np.array(['0', '7', '42', '-3', '1000000000000']), 'legacy'))


def test_cross_matches_reference_and_broadcasts():
  a = np.array([1, 2, 3], np.uint64)[:, None]
  b = np.array([10, 20], np.uint64)[None, :]
  got = hashing.cross_fingerprints(0xDECAFCAFFE, [a, b], 'legacy')
  assert got.shape == (3, 2)
  for i, x in enumerate([1, 2, 3]):
    for j, y in enumerate([10, 20]):
      assert int(got[i, j]) == ref.cross(0xDECAFCAFFE, [x, y])
  # order matters and the key matters
  assert int(hashing.cross_fingerprints(5, [b[:, :1], a[:1]])[0, 0]) != int(
      hashing.cross_fingerprints(5, [a[:1], b[:, :1]])[0, 0])
  assert int(hashing.cross_fingerprints(6, [a[:1], b[:, :1]])[0, 0]) != int(
      hashing.cross_fingerprints(5, [a[:1], b[:, :1]])[0, 0])


def _chi_square(counts: np.ndarray) -> float:
  expected = counts.sum() / counts.size
  return float(((counts - expected) ** 2 / expected).sum())


def test_hash_bucket_distribution_is_uniform():
  values = np.array([f'user_{i}' for i in range(100_000)])
  buckets = (fc.fingerprint_strings(values, 'legacy') % np.uint64(500)).astype(np.int64)
  chi2 = _chi_square(np.bincount(buckets, minlength=500))
  dof = 499  # chi2 ~ dof +- sqrt(2 dof) ~ 32; 6 sigma is far from any real failure
  assert abs(chi2 - dof) < 6 * np.sqrt(2 * dof), chi2


def test_crossed_column_buckets_are_uniform():
  # 400 x 250 distinct pairs from small, structured vocabularies, crossed into 1000 buckets
  a = np.repeat(np.array([f'a{i}' for i in range(400)]), 250)
  b = np.tile(np.arange(250), 400)
  col = fc.crossed_column(['a', 'b'], hash_bucket_size=1000)
  ids = fc.transform_features({'a': a, 'b': b}, [col])[keys.ids_key(col)]
  counts = np.bincount(ids.reshape(-1), minlength=1000)
  assert counts.size == 1000
  chi2 = _chi_square(counts)
  assert abs(chi2 - 999) < 6 * np.sqrt(2 * 999), chi2


_SUBPROCESS = r'''
import json, numpy as np
import jestimator.columns as fc
from jestimator.columns import keys
strings = json.loads(input())
occ = fc.categorical_column_with_hash_bucket('occ', 1000)
cross = fc.crossed_column(['occ', 'edu'], 10_000)
out = fc.transform_features({'occ': np.array(strings), 'edu': np.array(strings[::-1])},
                            [occ, cross])
print(json.dumps({'fp': [str(v) for v in fc.fingerprint_strings(np.array(strings), 'legacy')],
                  'hash': out[keys.ids_key(occ)].reshape(-1).tolist(),
                  'cross': out[keys.ids_key(cross)].reshape(-1).tolist()}))
'''


def test_stable_across_processes_and_hash_seeds():
  strings = STRINGS[1:]
  occ = fc.categorical_column_with_hash_bucket('occ', 1000)
  cross = fc.crossed_column(['occ', 'edu'], 10_000)
  here = fc.transform_features({'occ': np.array(strings), 'edu': np.array(strings[::-1])},
                               [occ, cross])
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__))))
  procs = []
  for seed in ('0', '4242'):  # two other hash seeds, run side by side
    env = dict(os.environ, PYTHONHASHSEED=seed, JAX_PLATFORMS='cpu',
               PYTHONPATH=os.pathsep.join([root, os.environ.get('PYTHONPATH', '')]))
    procs.append(subprocess.Popen([sys.executable, '-c', _SUBPROCESS], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=root))
  for proc in procs:
    out, err = proc.communicate(json.dumps(strings) + '\n', timeout=120)
    assert proc.returncode == 0, err[-2000:]
    there = json.loads(out.strip().splitlines()[-1])
    assert there['fp'] == [str(ref.fingerprint(s)) for s in strings]
    assert there['hash'] == here[keys.ids_key(occ)].reshape(-1).tolist()
    assert there['cross'] == here[keys.ids_key(cross)].reshape(-1).tolist()


def test_golden_values_never_change():
  # Pinned forever: changing them would silently remap every trained hash bucket.
  legacy = fc.fingerprint_strings(np.array(['', 'a', 'Bachelors', 'héllo']), 'legacy')
  assert int(legacy[0]) == hashing.empty_fingerprint('legacy')
  assert [int(v) for v in legacy[1:]] == [
      ref.fingerprint('a'), ref.fingerprint('Bachelors'), ref.fingerprint('héllo')]
  assert ref.fingerprint('a') == GOLDEN_A
  assert ref.cross(0xDECAFCAFFE, [ref.fingerprint('a'), 3]) == GOLDEN_CROSS


GOLDEN_A = 0xD1FC67C9EB1B48E6  # computed once from the reference implementation, then frozen
GOLDEN_CROSS = 0xEFD4E076A346735F
