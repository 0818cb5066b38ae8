"""What a benchmark result needs to say about where it ran."""
from __future__ import annotations

import os
import platform
import resource
import sys


def machine_info() -> dict:
  """Device kind and count, host CPU, memory and library versions."""
  import flax
  import jax
  import numpy as np
  import optax
  import orbax.checkpoint as ocp
  cpu = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  mem_gib = None
  try:
    mem_gib = round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30, 1)
  except (ValueError, OSError):
    pass
  devices = jax.devices()
  return {
      'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
      'device_count': len(devices), 'host_cpu': cpu, 'host_cores': os.cpu_count(),
      'host_memory_gib': mem_gib, 'python': sys.version.split()[0],
      'versions': {'jax': jax.__version__, 'flax': flax.__version__, 'optax': optax.__version__,
                   'orbax-checkpoint': getattr(ocp, '__version__', '?'),
                   'numpy': np.__version__},
  }


def peak_rss_mib() -> float:
  """Peak resident memory of this process so far, in MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(results: dict, out: str, indent: int = 1) -> None:
  """Writes a benchmark's results as JSON to `out` (creating its folder) and says where."""
  import json
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'w') as f:
    json.dump(results, f, indent=indent)
  print(f'wrote {out}')
