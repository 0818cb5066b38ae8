"""Independent pure-Python reference of the documented hash (one string at a time, Python ints)."""
from __future__ import annotations

M64 = 2 ** 64 - 1
GOLDEN = 0x9E3779B97F4A7C15
SEED = 0x6A09E667F3BCC908
C2 = 0xFF51AFD7ED558CCD


def fmix64(h: int) -> int:
  h ^= h >> 33
  h = (h * 0xFF51AFD7ED558CCD) & M64
  h ^= h >> 33
  h = (h * 0xC4CEB9FE1A85EC53) & M64
  h ^= h >> 33
  return h


def fingerprint(s: str | bytes | int) -> int:
  """The docstring's definition of jestimator.columns.hashing, written straight from it."""
  if isinstance(s, bytes):
    s = s.decode('utf-8')
  if isinstance(s, int):
    s = str(s)
  cps = [ord(c) for c in s]
  if len(cps) % 2:
    cps.append(0)
  acc = SEED
  for j in range(len(cps) // 2):
    w = cps[2 * j] | (cps[2 * j + 1] << 32)
    x = (w * (((2 * j + 1) * GOLDEN) & M64)) & M64
    acc = (acc + ((x ^ (x >> 32)) * C2)) & M64
  return fmix64(acc)


def cross(hash_key: int, fingerprints: list[int]) -> int:
  """h = hash_key; h = fmix64(h ^ (fmix64(f) + GOLDEN + (h << 6) + (h >> 2))) per input."""
  h = hash_key & M64
  for f in fingerprints:
    g = (fmix64(f & M64) + GOLDEN + ((h << 6) & M64) + (h >> 2)) & M64
    h = fmix64(h ^ g)
  return h


K_MUL = 0xC6A4A7935BD1E995


def farmhash64(s: str | bytes | int) -> int:
  """TF's string fingerprint: FarmHash Fingerprint64 of the UTF-8 bytes, one value at a time."""
  import farmhash  # the scalar C function on bytes; the fixtures pin it to TF's own values
  if isinstance(s, int):
    s = str(s)
  return farmhash.fingerprint64(s.encode('utf-8') if isinstance(s, str) else s)


def tf_cross(hash_key: int, fingerprints: list[int]) -> int:
  """TF's `FingerprintCat64` fold (tensorflow/core/lib/hash/hash.h), written from its C++."""
  def shift_mix(v: int) -> int:
    return v ^ (v >> 47)
  h = hash_key & M64
  for f in fingerprints:
    r = h ^ K_MUL
    r ^= (shift_mix(((f & M64) * K_MUL) & M64) * K_MUL) & M64
    r = (r * K_MUL) & M64
    r = (shift_mix(r) * K_MUL) & M64
    h = shift_mix(r)
  return h
