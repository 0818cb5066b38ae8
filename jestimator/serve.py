"""`python -m jestimator.serve --export_dir DIR`: serve an export over TF Serving's REST API.

  python -m jestimator.serve --export_dir /tmp/model/export/latest --model_name census --port 8501
  curl -d '{"instances": [{"age": 39, "occupation": "Sales"}]}' \
       http://127.0.0.1:8501/v1/models/census:predict

`--export_dir` may be one export or a folder of exports (the newest is served). Concurrent requests
are batched (up to `--max_batch_size` rows). Prints `Serving <path> ... at http://HOST:PORT` once
ready. Needs only jax, numpy and jestimator: not the code that defined the model.
"""
from __future__ import annotations

import argparse
import logging
import sys

from jestimator._serving.server import ModelServer

__all__ = ['ModelServer', 'main']


def main(argv: list[str] | None = None) -> int:
  """Parses the flags and serves until interrupted."""
  p = argparse.ArgumentParser(prog='python -m jestimator.serve', description=__doc__.split('\n')[0])
  p.add_argument('--export_dir', required=True, help='an export, or a folder of exports')
  p.add_argument('--model_name', default='default',
                 help='NAME in /v1/models/NAME (default: %(default)s)')
  p.add_argument('--port', type=int, default=8501,
                 help='0 picks a free port (default: %(default)s)')
  p.add_argument('--host', default='127.0.0.1', help='address to bind (default: %(default)s)')
  p.add_argument('--max_batch_size', type=int, default=128,
                 help='most rows scored together (default: %(default)s)')
  p.add_argument('--batch_timeout_ms', type=float, default=0.0,
                 help='wait this long for more requests to batch (default: %(default)s)')
  p.add_argument('--warmup', default='1',
                 help='comma-separated batch sizes to compile before serving, "" for none '
                      '(default: %(default)s)')
  args = p.parse_args(argv)
  try:
    warmup = [int(b) for b in args.warmup.split(',') if b.strip()]
  except ValueError:
    p.error(f'--warmup must be comma-separated integers, got {args.warmup!r}')
  logging.basicConfig(level=logging.INFO, format='%(message)s')
  try:
    server = ModelServer(args.export_dir, args.model_name, args.host, args.port,
                         args.max_batch_size, args.batch_timeout_ms, warmup)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'Serving {server.model.path} (step {server.model.global_step}, signatures '
        f'{sorted(server.model.signatures)}) as {args.model_name!r} at {server.url}', flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.stop()
  return 0


if __name__ == '__main__':
  sys.exit(main())
