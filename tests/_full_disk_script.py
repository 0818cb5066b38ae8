"""Trains 2 steps, then continues with every file limited to a few hundred bytes (RLIMIT_FSIZE,
SIGXFSZ ignored): each write past it fails with EFBIG, as writes on a full disk fail with ENOSPC."""
import json
import resource
import signal
import sys

import _models
from jestimator import inputs
from jestimator.estimator import Estimator
from jestimator.run_config import RunConfig

model_dir = sys.argv[1]
x, y = _models.make_data(100)
fn = inputs.numpy_input_fn({'x': x}, y, batch_size=10, num_epochs=None, shuffle=False)
config = RunConfig(save_checkpoints_steps=2, save_summary_steps=1000, log_step_count_steps=1000)
Estimator(_models.linear_model_fn(), model_dir, config=config).train(fn, steps=2)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200, resource.RLIM_INFINITY))
Estimator(_models.linear_model_fn(), model_dir, config=config).train(fn, steps=4)
print(json.dumps('unreachable'))
