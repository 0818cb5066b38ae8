"""Named arrays in one file, in the safetensors layout (no pickle, no code on load).

Layout: 8 bytes little-endian header length, a JSON header
`{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`,
then the raw little-endian bytes of every array. Files written here open with the `safetensors`
library too; reading needs only numpy (and ml_dtypes for bfloat16, which jax brings).
"""
from __future__ import annotations

import json
import struct
from typing import Mapping

import numpy as np

_CODES = {'float64': 'F64', 'float32': 'F32', 'float16': 'F16', 'bfloat16': 'BF16',
          'int64': 'I64', 'int32': 'I32', 'int16': 'I16', 'int8': 'I8', 'uint64': 'U64',
          'uint32': 'U32', 'uint16': 'U16', 'uint8': 'U8', 'bool': 'BOOL'}
_NAMES = {v: k for k, v in _CODES.items()}
_ALIGN = 8


def _dtype(name: str) -> np.dtype:
  if name == 'bfloat16':
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(name)


def write(path: str, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
          ) -> None:
  """Writes `{name: array}` to `path`; TypeError naming an array of an unsupported dtype."""
  header: dict = {}
  chunks = []
  offset = 0
  for name in sorted(arrays):
    a = np.ascontiguousarray(arrays[name])
    code = _CODES.get(a.dtype.name)
    if code is None:
      raise TypeError(f'cannot store array {name!r} of dtype {a.dtype}; supported: '
                      f'{sorted(_CODES)}')
    data = a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()
    header[name] = {'dtype': code, 'shape': list(a.shape),
                    'data_offsets': [offset, offset + len(data)]}
    chunks.append(data)
    offset += len(data)
  if metadata:
    header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
  text = json.dumps(header, separators=(',', ':')).encode('utf-8')
  text += b' ' * (-len(text) % _ALIGN)
  with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(text)))
    f.write(text)
    for c in chunks:
      f.write(c)


def read(path: str) -> dict[str, np.ndarray]:
  """`{name: array}` from a file written by `write` (or any safetensors file of these dtypes)."""
  with open(path, 'rb') as f:
    blob = f.read()
  if len(blob) < 8:
    raise ValueError(f'{path} is not a tensor file (only {len(blob)} bytes)')
  (n,) = struct.unpack('<Q', blob[:8])
  if 8 + n > len(blob):
    raise ValueError(f'{path} is not a tensor file (header length {n} exceeds the file)')
  try:
    header = json.loads(blob[8:8 + n])
  except ValueError as e:
    raise ValueError(f'{path} is not a tensor file (bad header: {e})') from None
  data = memoryview(blob)[8 + n:]
  out = {}
  for name, entry in header.items():
    if name == '__metadata__':
      continue
    if entry['dtype'] not in _NAMES:
      raise ValueError(f'{path}: array {name!r} has unsupported dtype {entry["dtype"]}')
    begin, end = entry['data_offsets']
    dtype = _dtype(_NAMES[entry['dtype']]).newbyteorder('<')
    out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(entry['shape'])
  return out
