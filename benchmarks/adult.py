"""Canned estimators on UCI Adult from raw columns: Linear, DNN [100, 75, 50, 25] and wide & deep.

Each model trains through feature columns on the raw CSV columns, next to a hand-written jitted
flax + optax loop over pre-processed arrays of the same model, in the same process. Reports
steady training examples/sec, compile time, evaluate and predict throughput, accuracy / AUC and
peak RSS; writes `benchmarks/results/adult_cpu.json` (or `--out`).

  python -m benchmarks.adult [--suite quick|full]

This is the harness's `adult` workload (`python -m benchmarks.run --workloads adult`) on its own.
Targets on a 2-core CPU: canned DNN steady training >= 0.9x the hand-written loop (TF Estimator
2.15 reached ~0.27x), predict >= 1M examples/s.
"""
from __future__ import annotations

import argparse
import sys

from benchmarks import run


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--suite', default='quick', choices=('tiny', 'quick', 'full'))
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv)
  out = args.out or 'benchmarks/results/adult_cpu.json'
  return run.main(['--suite', args.suite, '--workloads', 'adult', '--out', out])


if __name__ == '__main__':
  sys.exit(main())
