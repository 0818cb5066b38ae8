"""A vectorised (numpy) reader of the protocol buffer wire format, specialised to tf.Example.

`collect(serialized, keys)` reads a whole batch of serialized `tf.train.Example`s at once: every
step below works on flat arrays over all records, looping only over a message's fields (a dozen for
a typical Example), never over records. It returns, per requested key, each record's feature kind,
value count and the values in record order. Anything it does not read exactly as protobuf would
(groups, a map entry or Feature with a repeated field, malformed lengths) raises `Unsupported`, and
the caller parses that batch with the protobuf library instead, so the answer never differs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

BYTES, FLOAT, INT64 = 1, 2, 3  # Feature.kind field numbers (0: no value)
_PAD = 16  # > the longest varint (10 bytes)


class Unsupported(Exception):
  """The fast reader cannot decode this batch exactly; use the protobuf path."""


def _varints(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(uint64 values, byte lengths) of the varints starting at `pos`."""
  b = buf[pos]
  more = b >= 0x80
  if not more.any():  # the common case: every value < 128
    return b.astype(np.uint64), np.ones(pos.shape[0], np.int64)
  val = (b & 0x7F).astype(np.uint64)
  length = np.ones(pos.shape[0], np.int64)
  active = np.flatnonzero(more)
  for k in range(1, 10):
    b = buf[pos[active] + k]
    val[active] |= (b & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    more = b >= 0x80
    length[active] = k + 1
    active = active[more]
    if not active.size:
      return val, length
  raise Unsupported('varint longer than 10 bytes')


@dataclasses.dataclass
class _Fields:
  msg: np.ndarray     # index of the message each field belongs to
  number: np.ndarray
  wire: np.ndarray
  start: np.ndarray   # payload (LEN), the varint's bytes (VARINT) or the fixed bytes (I32/I64)
  length: np.ndarray

  def select(self, number: int, wire: int) -> np.ndarray:
    return np.flatnonzero((self.number == number) & (self.wire == wire))


def _walk(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> _Fields:
  """Every field of the messages `buf[start[i]:end[i]]`, in message order within each message."""
  parts = []
  msg = np.flatnonzero(start < end)
  pos, stop = start[msg], end[msg]
  while msg.size:
    tag, tag_len = _varints(buf, pos)
    wire = (tag & np.uint64(7)).astype(np.int64)
    number = (tag >> np.uint64(3)).astype(np.int64)
    p = pos + tag_len
    length = np.zeros_like(p)
    pstart = p.copy()
    if np.any((number == 0) | ((wire != 0) & (wire != 1) & (wire != 2) & (wire != 5))):
      raise Unsupported('field number 0 or a group')
    is_var, is_len = wire == 0, wire == 2
    if is_var.any():
      length[is_var] = _varints(buf, p[is_var])[1]
    length[wire == 1] = 8
    length[wire == 5] = 4
    if is_len.any():
      n, n_len = _varints(buf, p[is_len])
      if np.any(n >= np.uint64(2 ** 31)):
        raise Unsupported('length out of range')
      pstart[is_len] = p[is_len] + n_len
      length[is_len] = n.astype(np.int64)
    nxt = pstart + length
    if np.any(nxt > stop):
      raise Unsupported('a field runs past the end of its message')
    parts.append((msg, number, wire, pstart, length))
    keep = nxt < stop
    msg, pos, stop = msg[keep], nxt[keep], stop[keep]
  if not parts:
    z = np.zeros(0, np.int64)
    return _Fields(z, z, z, z, z)
  return _Fields(*(np.concatenate(c) for c in zip(*parts)))


def _last_per_message(msg: np.ndarray, order: np.ndarray, n: int) -> np.ndarray:
  """Per message (of n), the position in `msg` of its last field (largest `order`), else -1."""
  out = np.full(n, -1, np.int64)
  if msg.size:
    idx = np.lexsort((order, msg))
    m = msg[idx]
    last = idx[np.r_[m[1:] != m[:-1], True]]
    out[msg[last]] = last
  return out


def range_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Concatenated `arange(s, s + l)` for each (s, l), without a Python loop."""
  offsets = np.cumsum(lengths) - lengths
  return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _only_one(f: _Fields, sel: np.ndarray, what: str):
  m = f.msg[sel]
  if m.size and np.bincount(m).max() > 1:
    raise Unsupported(f'{what} repeated in one message')


def _bytes_values(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
  """The byte strings as a fixed-width `S` array (vectorised), or a list when that would lose
  data (a value ending in NUL, which `S` strips) or be huge."""
  m = starts.shape[0]
  width = int(lengths.max(initial=0))
  ends_in_nul = lengths.size and np.any(buf[starts + lengths - 1][lengths > 0] == 0)
  if ends_in_nul or m * width > 64 * 2 ** 20:
    raw = buf.tobytes()
    return [raw[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())]
  mat = np.zeros((m, max(width, 1)), np.uint8)
  idx = range_indices(starts, lengths)
  rows = np.repeat(np.arange(m), lengths)
  mat[rows, idx - np.repeat(starts, lengths)] = buf[idx]
  return mat.view(f'S{max(width, 1)}').reshape(m)


def _decode_lists(buf: np.ndarray, kind: int, f: _Fields, owner: np.ndarray, n: int):
  """(counts[n], values) of the list messages walked in `f` (message i belongs to owner[i])."""
  if kind == BYTES:
    sel = f.select(1, 2)
  else:
    sel = np.flatnonzero(f.number == 1)
    ok_wire = (2, 5) if kind == FLOAT else (2, 0)
    if np.any((f.wire[sel] != ok_wire[0]) & (f.wire[sel] != ok_wire[1])):
      raise Unsupported('unexpected wire type in a value list')
  rec = owner[f.msg[sel]]
  order = np.lexsort((f.start[sel], rec))
  sel, rec = sel[order], rec[order]
  starts, lengths = f.start[sel], f.length[sel]
  if kind == BYTES:
    return np.bincount(rec, minlength=n), _bytes_values(buf, starts, lengths)
  data = buf[range_indices(starts, lengths)]
  if kind == FLOAT:
    if np.any(lengths % 4):
      raise Unsupported('packed floats of a length not divisible by 4')
    return np.bincount(rec, lengths // 4, minlength=n).astype(np.int64), data.view('<f4')
  # int64: a stream of varints; a byte < 0x80 ends a value
  ends = data < 0x80
  if data.size and not ends[-1]:
    raise Unsupported('truncated varint')
  done = np.r_[0, np.cumsum(ends)]  # values ended before each byte
  offsets = np.cumsum(lengths) - lengths
  per_range = done[offsets + lengths] - done[offsets]
  counts = np.bincount(rec, per_range, minlength=n).astype(np.int64)
  value_id = np.cumsum(ends) - ends  # which value each byte belongs to
  first = np.r_[0, np.flatnonzero(ends)[:-1] + 1] if ends.any() else np.zeros(0, np.int64)
  shift = (np.arange(data.size) - first[value_id]) * 7
  if np.any(shift > 63):
    raise Unsupported('varint longer than 10 bytes')
  parts = (data & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
  values = np.bitwise_or.reduceat(parts, first) if first.size else np.zeros(0, np.uint64)
  return counts, values.view(np.int64)


Lists = dict[int, tuple[np.ndarray, np.ndarray | list]]


def _key_ids(buf: np.ndarray, k_start: np.ndarray, k_len: np.ndarray, keys: list[str]):
  """Per map entry, the index of its key in `keys`, else -1 (one gather and one search)."""
  encoded = [k.encode('utf-8') for k in keys]
  width = max(max(map(len, encoded)), 1)
  ids = np.full(k_start.shape[0], -1, np.int64)
  cand = np.flatnonzero(k_len <= width)
  if not cand.size:
    return ids
  cols = np.arange(width)
  mat = buf[k_start[cand, None] + cols]
  mat[cols >= k_len[cand, None]] = 0
  names = mat.view(f'S{width}').reshape(-1)
  table = np.array(encoded, dtype=f'S{width}')
  order = np.argsort(table)
  pos = np.minimum(np.searchsorted(table[order], names), len(keys) - 1)
  # `S` drops trailing NULs: also require the exact length, so 'a' never matches 'a\0'
  hit = (table[order][pos] == names) & (k_len[cand] == np.array(list(map(len, encoded)))[
      order][pos])
  ids[cand[hit]] = order[pos[hit]]
  return ids


Lists = dict[int, tuple[np.ndarray, np.ndarray | list]]


def collect(serialized: list[bytes], keys: list[str]) -> dict[str, tuple[np.ndarray, Lists]]:
  """Reads `keys` from a batch of serialized Examples.

  Returns `{key: (kinds, lists)}`: `kinds[n]` int8 is the Feature kind each record holds for
  `key` (`BYTES` / `FLOAT` / `INT64`, 0 when absent or empty), and `lists[kind] = (counts[n],
  values)` gives, for the records of that kind, the number of values per record and all values
  in record order (float32, int64, or byte strings as an `S` array or a list).
  """
  n, n_keys = len(serialized), len(keys)
  lens = np.fromiter(map(len, serialized), np.int64, count=n)
  # zero bytes after the data, so varint and key reads never run off the end
  pad = _PAD + max(len(k.encode('utf-8')) for k in keys)
  buf = np.frombuffer(b''.join(serialized) + bytes(pad), np.uint8)
  ends = np.cumsum(lens)
  ex = _walk(buf, ends - lens, ends)
  feats = ex.select(1, 2)          # Example.features (several occurrences merge, as protobuf)
  fs = _walk(buf, ex.start[feats], ex.start[feats] + ex.length[feats])
  ent = fs.select(1, 2)            # Features.feature map entries
  entry_rec = ex.msg[feats][fs.msg[ent]]
  e_start = fs.start[ent]
  es = _walk(buf, e_start, e_start + fs.length[ent])
  key_sel, val_sel = es.select(1, 2), es.select(2, 2)
  _only_one(es, key_sel, 'map entry key')
  _only_one(es, val_sel, 'map entry value')
  n_ent = ent.size
  k_start, k_len = np.zeros(n_ent, np.int64), np.zeros(n_ent, np.int64)
  k_start[es.msg[key_sel]], k_len[es.msg[key_sel]] = es.start[key_sel], es.length[key_sel]
  v_start, v_len = np.zeros(n_ent, np.int64), np.zeros(n_ent, np.int64)
  v_start[es.msg[val_sel]], v_len[es.msg[val_sel]] = es.start[val_sel], es.length[val_sel]
  kid = _key_ids(buf, k_start, k_len, keys)
  matched = np.flatnonzero(kid >= 0)
  # a later entry with the same key replaces an earlier one (protobuf map semantics); a group is
  # one (key, record) pair, numbered key * n + record
  group = kid[matched] * n + entry_rec[matched]
  last = _last_per_message(group, e_start[matched], n_keys * n)
  groups = np.flatnonzero(last >= 0)
  entry = matched[last[groups]]
  fv = _walk(buf, v_start[entry], v_start[entry] + v_len[entry])
  kind_sel = np.flatnonzero(np.isin(fv.number, (BYTES, FLOAT, INT64)))
  if np.any(fv.wire[kind_sel] != 2):
    raise Unsupported('Feature.kind with a non-LEN wire type')
  _only_one(fv, kind_sel, 'Feature.kind')
  kinds = np.zeros(n_keys * n, np.int8)
  kinds[groups[fv.msg[kind_sel]]] = fv.number[kind_sel]
  per_kind = {}
  for kind in (BYTES, FLOAT, INT64):
    s = kind_sel[fv.number[kind_sel] == kind]
    if s.size:
      lists = _walk(buf, fv.start[s], fv.start[s] + fv.length[s])
      counts, values = _decode_lists(buf, kind, lists, groups[fv.msg[s]], n_keys * n)
      counts = counts.reshape(n_keys, n)
      bounds = np.r_[0, np.cumsum(counts.sum(axis=1))]
      per_kind[kind] = (counts, values, bounds)
  out = {}
  for j, key in enumerate(keys):
    out[key] = (kinds[j * n:(j + 1) * n], {
        kind: (c[j], v[b[j]:b[j + 1]]) for kind, (c, v, b) in per_kind.items()})
  return out
