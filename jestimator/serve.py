"""`jestimator-serve` / `python -m jestimator.serve`: serve exports over TF Serving's REST API.

  jestimator-serve --model_name=census --model_base_path=/tmp/census/export --rest_api_port=8501
  curl -d '{"instances": [{"age": 39, "occupation": "Sales"}]}' \\
       http://127.0.0.1:8501/v1/models/census:predict

TF Serving's flags work (`--model_name`, `--model_base_path`, `--rest_api_port`,
`--model_config_file`, `--file_system_poll_wait_seconds`), next to this server's own spellings
(`--export_dir`, `--port`). The base path is watched: new versions load as they appear, the
policy (`--model_version_policy`) says which stay addressable. SIGTERM (or Ctrl-C) stops
gracefully: no new connections, in-flight requests answered, exit status 0. Prints
`Serving <path> ... at http://HOST:PORT` once ready. Needs only jax, numpy and jestimator: not the
code that defined the model.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from jestimator._serving import config as config_lib
from jestimator._serving import rest
from jestimator._serving.server import ModelServer
from jestimator._serving.versions import VersionPolicy

__all__ = ['ModelServer', 'VersionPolicy', 'main']


def _port(text: str) -> int:
  try:
    port = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'must be an integer port number, got {text!r}') from None
  if not 0 <= port <= 65535:
    raise argparse.ArgumentTypeError(f'must be in [0, 65535] (0 picks a free port), got {port}')
  return port


def _positive(kind):
  def parse(text: str):
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'must be a {kind.__name__}, got {text!r}') from None
    if value < 0:
      raise argparse.ArgumentTypeError(f'must be >= 0, got {text!r}')
    return value
  return parse


def _policy(text: str) -> VersionPolicy:
  try:
    return VersionPolicy.parse(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='jestimator-serve', description=__doc__.split('\n')[0])
  p.add_argument('--model_base_path', '--export_dir', dest='base_path',
                 help='a folder of numbered exports (watched for new versions), or one export')
  p.add_argument('--model_name', default='default',
                 help='NAME in /v1/models/NAME (default: %(default)s)')
  p.add_argument('--model_config_file',
                 help="TF Serving's ModelServerConfig in text format, for several models")
  p.add_argument('--model_version_policy', type=_policy, default=VersionPolicy(),
                 help="'latest', 'latest:N', 'all' or 'specific:V1,V2' (default: latest)")
  p.add_argument('--rest_api_port', '--port', dest='port', type=_port, default=8501,
                 help='0 picks a free port (default: %(default)s)')
  p.add_argument('--host', default='127.0.0.1', help='address to bind (default: %(default)s)')
  p.add_argument('--file_system_poll_wait_seconds', type=_positive(float), default=1.0,
                 help='how often to look for new versions; 0: never (default: %(default)s)')
  p.add_argument('--max_batch_size', type=int, default=128,
                 help='most rows scored together (default: %(default)s)')
  p.add_argument('--batch_timeout_ms', type=_positive(float), default=0.0,
                 help='wait this long for more requests to batch (default: %(default)s)')
  p.add_argument('--warmup', default='1',
                 help='comma-separated batch sizes to compile before serving, "" for none '
                      '(default: %(default)s)')
  p.add_argument('--nan_policy', choices=rest.NAN_POLICIES, default='nan',
                 help='non-finite outputs: NaN/Infinity as TF Serving writes them, null (strict '
                      'JSON), or error (default: %(default)s)')
  p.add_argument('--max_connections', type=int, default=128,
                 help='connections served at once; more get 503 (default: %(default)s)')
  p.add_argument('--read_timeout_s', type=float, default=30.0,
                 help='longest wait for a client to send data (default: %(default)s)')
  p.add_argument('--header_timeout_s', type=float, default=20.0,
                 help="a request's line and headers must arrive within this time of its first "
                      'byte, else 408 and close (default: %(default)s)')
  p.add_argument('--body_timeout_s', type=float, default=20.0,
                 help='a request body must arrive within this time plus one second per '
                      '--min_body_rate bytes, else 408 and close (default: %(default)s)')
  p.add_argument('--min_body_rate', type=_positive(float), default=500.0,
                 help='bytes per second a body must sustain; 0: a fixed --body_timeout_s '
                      '(default: %(default)s)')
  p.add_argument('--load_retry_interval_micros', type=_positive(int), default=60_000_000,
                 help='retry a version that failed to load this often (TF Serving\'s flag; a '
                      'version whose files change is retried at once) (default: %(default)s)')
  p.add_argument('--max_num_load_retries', type=_positive(int), default=5,
                 help='scheduled retries of a failed load (default: %(default)s)')
  return p


def main(argv: list[str] | None = None) -> int:
  """Parses the flags and serves until SIGTERM / SIGINT; returns the exit status."""
  p = _parser()
  args = p.parse_args(argv)
  if (args.base_path is None) == (args.model_config_file is None):
    p.error('give exactly one of --model_base_path (or --export_dir) and --model_config_file')
  try:
    warmup = [int(b) for b in args.warmup.split(',') if b.strip()]
  except ValueError:
    p.error(f'--warmup must be comma-separated integers, got {args.warmup!r}')
  # force: an imported library may have configured the root logger already (at WARNING).
  logging.basicConfig(level=logging.INFO, format='%(message)s', force=True)
  logging.getLogger('jax').setLevel(logging.WARNING)  # its INFO lines (backend probing) are noise
  try:
    models = None
    if args.model_config_file:
      with open(args.model_config_file) as f:
        models = config_lib.parse(f.read())
    server = ModelServer(args.base_path, args.model_name, args.host, args.port,
                         args.max_batch_size, args.batch_timeout_ms, warmup,
                         version_policy=args.model_version_policy, models=models,
                         poll_interval_s=args.file_system_poll_wait_seconds,
                         nan_policy=args.nan_policy, max_connections=args.max_connections,
                         read_timeout_s=args.read_timeout_s,
                         header_timeout_s=args.header_timeout_s,
                         body_timeout_s=args.body_timeout_s, min_body_rate=args.min_body_rate,
                         load_retry_interval_s=args.load_retry_interval_micros / 1e6,
                         max_num_load_retries=args.max_num_load_retries)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  stop = threading.Event()
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.set())
  server.start()
  for name, versions in server.models.items():
    model = versions.get()
    print(f'Serving {model.path} (step {model.global_step}, signatures '
          f'{sorted(model.signatures)}) as {name!r} at {server.url}', flush=True)
  while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
    pass
  print('Stopping: finishing in-flight requests', flush=True)
  return 0 if server.drain() else 1


if __name__ == '__main__':
  sys.exit(main())
