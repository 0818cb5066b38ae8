"""`crossed_column`: hashed Cartesian product of several categorical inputs."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from jestimator.columns import base, hashing as hashing_lib
from jestimator.columns.categorical import HashedCategoricalColumn, WeightedCategoricalColumn

DEFAULT_HASH_KEY = 0xDECAFCAFFE  # TF's default


@dataclasses.dataclass(frozen=True)
class CrossedColumn(base.CategoricalColumn):
  """Every combination of the inputs' values, hashed into `hash_bucket_size` buckets.

  An input is a raw feature key (its strings are fingerprinted; integers enter as they are) or a
  categorical column (its ids enter as they are). Nested crosses are flattened into their inputs.
  The cross is computed on the host (it needs 64-bit integer arithmetic, which JAX disables by
  default); see `jestimator.columns.hashing` for the exact hash (`hashing='tf'`: TF's ids and their
  order, where '' and -1 in a raw key are values like any other, as in TF; `'legacy'`: jestimator's
  older hash, where they are missing).
  """
  keys: tuple[str | base.CategoricalColumn, ...]
  hash_bucket_size: int
  hash_key: int | None = None
  hashing: str = 'tf'

  _tf_name = 'crossed_column'

  @property
  def name(self) -> str:
    return '_X_'.join(sorted(k if isinstance(k, str) else k.name for k in self.keys))

  @property
  def num_buckets(self) -> int:
    return self.hash_bucket_size

  @property
  def effective_hash_key(self) -> int:
    """`hash_key`, or TF's default 0xDECAFCAFFE."""
    return DEFAULT_HASH_KEY if self.hash_key is None else self.hash_key


def crossed_column(keys: Sequence[str | base.CategoricalColumn], hash_bucket_size: int,
                   hash_key: int | None = None, hashing: str = 'tf') -> CrossedColumn:
  """Crosses raw string/int features and categorical columns (as `tf.feature_column.crossed_column`).

  Hashed categorical columns cannot be crossed (cross their key instead, as TF requires).
  `hashing='legacy'` keeps the ids of models made before TF compatibility.

  Example: `crossed_column(['education', 'occupation'], hash_bucket_size=10_000)` or
  `crossed_column([age_buckets, 'education', 'occupation'], hash_bucket_size=1_000_000)`.
  """
  from jestimator.columns.sequence import SequenceCategoricalColumn  # a cycle otherwise
  if isinstance(keys, (str, bytes)) or not hasattr(keys, '__iter__'):
    raise base.ColumnTypeError(
        f'crossed_column: keys must be a list of feature keys / categorical columns, '
        f'got {keys!r:.80}')
  flat: list[str | base.CategoricalColumn] = []
  for k in keys:
    if isinstance(k, CrossedColumn):
      flat.extend(k.keys)
    else:
      flat.append(k)
  shown = [k if isinstance(k, str) else getattr(k, 'name', k) for k in flat]
  what = f'crossed_column({shown})'
  if len(flat) < 2:
    raise ValueError(f'{what}: keys must have at least two elements')
  for k in flat:
    if isinstance(k, str):
      base.check_key(k, what)
    elif isinstance(k, HashedCategoricalColumn):
      raise ValueError(f'{what}: cannot cross the hashed column {k.describe()}; hashing twice '
                       f"only adds collisions: use its key '{k.key}' in keys instead")
    elif isinstance(k, (WeightedCategoricalColumn, SequenceCategoricalColumn)):
      raise ValueError(f'{what}: cannot cross {k.describe()}; cross its key or the unweighted, '
                       'non-sequence column')
    elif not isinstance(k, base.CategoricalColumn):
      raise base.ColumnTypeError(
          f'{what}: each key must be a feature key (str) or a categorical column, got '
          f'{type(k).__name__}')
  size = base.check_positive_int(hash_bucket_size, f'{what}: hash_bucket_size')
  if hash_key is not None and (isinstance(hash_key, bool) or not isinstance(hash_key, int)
                               or not 0 <= hash_key < 2 ** 64):
    raise ValueError(f'{what}: hash_key must be an int in [0, 2**64), got {hash_key!r}')
  return CrossedColumn(tuple(flat), size, hash_key, hashing_lib.check_hashing(hashing, what))
