"""A stable, vectorised 64-bit fingerprint of strings and integers, and the crossing hash.

TF uses FarmHash `Fingerprint64` for hash buckets and `FingerprintCat64` for crosses. We do not
reproduce FarmHash bit for bit; what matters (and what the tests check) is that the fingerprint is
the same in every process, on every machine and under every `PYTHONHASHSEED` (Python's `hash` is
never used), and that buckets are uniform. The definition, fixed forever:

  string fingerprint(s):
    c_0 .. c_{n-1}  = the Unicode code points of s (UTF-32), plus one 0 if n is odd
    w_j             = c_{2j} + 2**32 * c_{2j+1}                    (64-bit words)
    x_j             = w_j * K_j, with K_j = (2j + 1) * 0x9E3779B97F4A7C15        (mod 2**64)
    acc             = SEED + sum_j ((x_j ^ (x_j >> 32)) * 0xFF51AFD7ED558CCD)     (mod 2**64)
    fingerprint     = fmix64(acc)               (MurmurHash3's 64-bit finaliser)

  Each word goes through a bijection that maps 0 to 0, so the zero padding numpy adds to fixed-width
  strings never changes a fingerprint. Bytes are decoded as UTF-8 first; an integer hashes as its
  decimal string (TF's `as_string`).

  cross(hash_key, f_1, ..., f_k):  h = hash_key;  h = fmix64(h ^ (fmix64(f_i) + GOLDEN + (h << 6)
  + (h >> 2))) for each input in order;  bucket = h % hash_bucket_size.

All arithmetic is numpy uint64 over a whole batch (chunked so temporaries stay in cache); there is
no per-row Python loop.
"""
from __future__ import annotations

import functools

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
SEED = 0x6A09E667F3BCC908  # first 64 bits of sqrt(2)'s fractional part
_CHUNK = 2048
_U64 = np.uint64
_C2, _SEED, _GOLDEN = _U64(0xFF51AFD7ED558CCD), _U64(SEED), _U64(GOLDEN)


_S33, _S32, _S2, _S6 = _U64(33), _U64(32), _U64(2), _U64(6)
_M1, _M2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)


def fmix64(h: np.ndarray) -> np.ndarray:
  """MurmurHash3's 64-bit finaliser, in place on a uint64 array (returns it).

  Array arithmetic on uint64 wraps modulo 2**64 silently, which is what every hash here relies on.
  """
  h ^= h >> _S33
  h *= _M1
  h ^= h >> _S33
  h *= _M2
  h ^= h >> _S33
  return h


@functools.lru_cache(maxsize=None)
def _word_consts(m: int) -> tuple[np.ndarray, np.ndarray]:
  """(per-position odd multipliers K_j, ones) for m words; cached, read-only."""
  j = np.arange(m, dtype=object)
  keys = np.array([((2 * int(i) + 1) * GOLDEN) % 2 ** 64 for i in j], dtype=np.uint64)
  ones = np.ones(m, np.uint64)
  keys.flags.writeable = ones.flags.writeable = False
  return keys, ones


def _fingerprint_codepoints(cp: np.ndarray) -> np.ndarray:
  """`cp`: `[n, L]` uint32 code points, 0-padded at the end. Returns `[n]` uint64."""
  n, length = cp.shape
  m = max(1, (length + 1) // 2)
  keys, ones = _word_consts(m)
  acc = np.empty(n, np.uint64)
  chunk = min(_CHUNK, max(n, 1))
  direct = length % 2 == 0 and length > 0 and cp.flags.c_contiguous
  buf = None if direct else np.zeros((chunk, 2 * m), np.uint32)  # odd last column stays 0
  tmp = np.empty((chunk, m), np.uint64)
  tmp2 = np.empty((chunk, m), np.uint64)
  for s in range(0, n, chunk):
    e = min(n, s + chunk)
    k = e - s
    if direct:
      words = cp[s:e].view('<u8')
    else:
      buf[:k, :length] = cp[s:e]
      words = buf[:k].view('<u8')
    a, b = tmp[:k], tmp2[:k]
    np.multiply(words, keys, out=a)
    np.right_shift(a, _S32, out=b)
    np.bitwise_xor(a, b, out=a)
    np.matmul(a, ones, out=acc[s:e])  # a wrapping uint64 row sum; faster than sum(axis=1)
  # sum_j C2 * y_j == C2 * sum_j y_j (mod 2**64): one multiply per row instead of per word
  acc *= _C2
  acc += _SEED
  return fmix64(acc)


def _codepoints(values: np.ndarray) -> np.ndarray:
  """A `[n, L]` uint32 code-point view/copy of a flat str or bytes array."""
  n = values.shape[0]
  if values.dtype.kind == 'U':
    length = values.dtype.itemsize // 4
    values = np.ascontiguousarray(values).astype(f'<U{max(length, 1)}', copy=False)
    return values.view('<u4').reshape(n, max(length, 1))
  # bytes: ASCII widens directly; anything else is decoded as UTF-8 (slower, exact)
  length = values.dtype.itemsize
  raw = np.ascontiguousarray(values).view(np.uint8).reshape(n, max(length, 1))
  if length and raw.max(initial=0) >= 128:
    return _codepoints(np.char.decode(values, 'utf-8'))
  return raw.astype(np.uint32)


def fingerprint_strings(values: np.ndarray) -> np.ndarray:
  """Stable 64-bit fingerprints of a str (`U`) or bytes (`S`) array of any shape (same shape out).

  Example: `fingerprint_strings(np.array(['a', 'b']))` gives two uint64 values that every process
  reproduces. The empty string maps to `EMPTY_FINGERPRINT`.
  """
  values = np.asarray(values)
  if values.dtype.kind not in 'US':
    raise TypeError(f'fingerprint_strings takes a str or bytes array, got dtype {values.dtype}')
  flat = values.reshape(-1)
  return _fingerprint_codepoints(_codepoints(flat)).reshape(values.shape)


def fingerprint_ints(values: np.ndarray) -> np.ndarray:
  """Fingerprints of integers, computed on their decimal strings (as TF's `as_string`)."""
  values = np.asarray(values)
  if values.dtype.kind not in 'iub':
    raise TypeError(f'fingerprint_ints takes an integer array, got dtype {values.dtype}')
  return fingerprint_strings(values.astype(np.int64).astype(str))


EMPTY_FINGERPRINT = int(fingerprint_strings(np.array([''], dtype='<U1'))[0])


def cross_fingerprints(hash_key: int, inputs: list[np.ndarray]) -> np.ndarray:
  """Combines per-input uint64 arrays (broadcast together) into one uint64 array, in input order.

  An input is a string fingerprint, or the raw value of an integer id (two's complement).
  """
  shape = np.broadcast_shapes(*(x.shape for x in inputs))
  h = np.full(shape, hash_key & 0xFFFFFFFFFFFFFFFF, np.uint64)
  for x in inputs:
    f = fmix64(np.array(x, dtype=np.uint64, copy=True))
    f += _GOLDEN
    f = f + (h << _S6)
    f += h >> _S2
    h ^= f
    fmix64(h)
  return h


def as_uint64(ids: np.ndarray) -> np.ndarray:
  """Reinterprets signed integer ids as uint64 (two's complement), the way they enter a cross."""
  return np.asarray(ids, dtype=np.int64).view(np.uint64)
