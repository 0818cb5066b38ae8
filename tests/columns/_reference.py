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
