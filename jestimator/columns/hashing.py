"""Stable 64-bit fingerprints of strings and integers, and the crossing hash, in two flavours.

`hashing='tf'` (the default of every column): exactly TF 2.x. A string's fingerprint is FarmHash
`Fingerprint64` of its UTF-8 bytes (what `tf.strings.to_hash_bucket_fast` and the hash-bucket and
vocabulary-OOV lookups use; FarmHash comes from the `pyfarmhash` package), an integer hashes as its
decimal string (TF's `as_string`), and a cross folds the inputs' fingerprints (strings) or raw
values (integer ids) into `hash_key` with `FingerprintCat64`, as `tf.sparse.cross_hashed` does:

  FingerprintCat64(a, b) = shift_mix(shift_mix(((a ^ K) ^ (shift_mix(b * K) * K)) * K) * K),
  K = 0xC6A4A7935BD1E995,  shift_mix(v) = v ^ (v >> 47)   (all mod 2**64)

`hashing='legacy'`: jestimator's own fingerprint before TF compatibility, kept so models trained and
exported with it keep their buckets (a serialised column without a `hashing` field is legacy). Both
are the same in every process and machine and under every `PYTHONHASHSEED` (Python's `hash` is
never used). The legacy definition, fixed forever:

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

The legacy hash and both crosses are numpy uint64 arithmetic over a whole batch (chunked so
temporaries stay in cache). FarmHash runs in C, one call per distinct string driven by `map` (no
Python bytecode per value); callers deduplicate object columns first.
"""
from __future__ import annotations

import functools

import farmhash
import numpy as np

HASHINGS = ('tf', 'legacy')

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


def _farmhash(flat: np.ndarray) -> np.ndarray:
  """FarmHash Fingerprint64 of the UTF-8 bytes of each entry of a flat str/bytes array."""
  # tolist() gives str (hashed as UTF-8 by pyfarmhash) or bytes; numpy strips trailing NULs, which
  # a fixed-width array cannot tell from padding anyway
  return np.fromiter(map(farmhash.fingerprint64, flat.tolist()), np.uint64, count=flat.shape[0])


def check_hashing(hashing: str, what: str) -> str:
  """`hashing` if it is one of `HASHINGS`, else a ValueError naming `what`."""
  if hashing not in HASHINGS:
    raise ValueError(f"{what}: hashing must be one of {HASHINGS} ('tf': TF's FarmHash buckets; "
                     f"'legacy': jestimator's pre-TF-compatible hash), got {hashing!r}")
  return hashing


def fingerprint_strings(values: np.ndarray, hashing: str = 'tf') -> np.ndarray:
  """Stable 64-bit fingerprints of a str (`U`) or bytes (`S`) array of any shape (same shape out).

  `hashing='tf'`: FarmHash `Fingerprint64` of the UTF-8 bytes, so
  `fingerprint_strings(np.array(['hello'])) % 1000 == 296` exactly as
  `tf.strings.to_hash_bucket_fast('hello', 1000)`; `'legacy'`: the formula in the module docstring.
  The empty string maps to `empty_fingerprint(hashing)`.
  """
  values = np.asarray(values)
  if values.dtype.kind not in 'US':
    raise TypeError(f'fingerprint_strings takes a str or bytes array, got dtype {values.dtype}')
  flat = values.reshape(-1)
  if check_hashing(hashing, 'fingerprint_strings') == 'tf':
    return _farmhash(flat).reshape(values.shape)
  return _fingerprint_codepoints(_codepoints(flat)).reshape(values.shape)


def fingerprint_ints(values: np.ndarray, hashing: str = 'tf') -> np.ndarray:
  """Fingerprints of integers, computed on their decimal strings (as TF's `as_string`)."""
  values = np.asarray(values)
  if values.dtype.kind not in 'iub':
    raise TypeError(f'fingerprint_ints takes an integer array, got dtype {values.dtype}')
  return fingerprint_strings(values.astype(np.int64).astype(str), hashing)


_EMPTY = {h: int(fingerprint_strings(np.array([''], dtype='<U1'), h)[0]) for h in HASHINGS}


def empty_fingerprint(hashing: str = 'tf') -> int:
  """The fingerprint of '' (a missing value for hash-bucket and vocabulary columns)."""
  return _EMPTY[hashing]


_K_MUL = _U64(0xC6A4A7935BD1E995)
_S47 = _U64(47)


def _shift_mix(v: np.ndarray) -> np.ndarray:
  v ^= v >> _S47
  return v


def cross_fingerprints(hash_key: int, inputs: list[np.ndarray], hashing: str = 'tf') -> np.ndarray:
  """Combines per-input uint64 arrays (broadcast together) into one uint64 array, in input order.

  An input is a string fingerprint, or the raw value of an integer id (two's complement).
  `'tf'` folds with FarmHash's `FingerprintCat64` (as `tf.sparse.cross_hashed`); `'legacy'` with
  the formula in the module docstring.
  """
  legacy = check_hashing(hashing, 'cross_fingerprints') == 'legacy'
  shape = np.broadcast_shapes(*(x.shape for x in inputs))
  h = np.full(shape, hash_key & 0xFFFFFFFFFFFFFFFF, np.uint64)
  for x in inputs:
    f = np.array(x, dtype=np.uint64, copy=True)
    if legacy:
      fmix64(f)
      f += _GOLDEN
      f = f + (h << _S6)
      f += h >> _S2
      h ^= f
      fmix64(h)
      continue
    f *= _K_MUL
    _shift_mix(f)
    f *= _K_MUL
    h ^= _K_MUL
    h = h ^ f  # broadcasts h up to the inputs' shape
    h *= _K_MUL
    _shift_mix(h)
    h *= _K_MUL
    _shift_mix(h)
  return h


def as_uint64(ids: np.ndarray) -> np.ndarray:
  """Reinterprets signed integer ids as uint64 (two's complement), the way they enter a cross."""
  return np.asarray(ids, dtype=np.int64).view(np.uint64)
