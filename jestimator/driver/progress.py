"""The progress display of train / evaluate / predict.

On a terminal (stderr is a TTY) a progress bar is redrawn in place about once a second, with the
epoch when the input knows it (an in-memory input) and the ETA when the end is known:

  train [#######-----------------------] 1200/5000  24%  epoch 2/10  51234 ex/s  loss 0.3412  ETA 0:00:09

Without a known end there is no bar: `train step 1200  epoch 2  51234 ex/s  loss 0.3412`.

Otherwise (CI, a file, a notebook capturing stderr) a plain log line goes to the `'jestimator'`
logger at INFO every `log_step_count_steps` steps, shown with `jestimator.logging.set_verbosity
(logging.INFO)` or `logging.basicConfig(level=logging.INFO)`:

  train: step = 1200/5000, loss = 0.3412, examples/sec = 51234, ETA 0:00:09

The terminal bar is on by default and off after `set_verbosity(WARNING)` (or any level above
INFO set on the `'jestimator'` logger). examples/s is measured from the end of the first dispatch,
so compilation does not count; the loss is fetched only when a line is due, so the device is not
synced on other steps. The ETA needs a known end: `steps` / `max_steps`, or a finite in-memory
input (`numpy_input_fn` / `pandas_input_fn` with `num_epochs`).
"""
from __future__ import annotations

import datetime
import logging
import sys
import time
from typing import Callable, TextIO

from jestimator.driver.hooks import Hook, StepContext

logger = logging.getLogger('jestimator')

_VERBS = {'train': 'train', 'eval': 'evaluate', 'infer': 'predict'}
BAR_WIDTH = 30


def _on_terminal(stream: TextIO) -> bool:
  isatty = getattr(stream, 'isatty', None)
  try:
    return bool(isatty and isatty())
  except ValueError:  # a closed stream
    return False


class ProgressHook(Hook):
  """Shows step, examples/s, loss and ETA (see the module docstring); the loops add one.

  Args:
    mode: the loop's ModeKeys.
    every_n_steps: log-line cadence when not on a terminal (`RunConfig.log_step_count_steps`).
    terminal_secs: redraw interval of the terminal line.
    stream: where the terminal line goes (default stderr); whether it is a TTY picks the style.
    fetch_loss: ask for the step's `loss` when a line is due (train, evaluate; it also waits
      for the first dispatch, so compilation is not timed).
    show_loss: print it (train); evaluate fetches it only to wait, since one batch's loss is
      not the evaluation's.
    epoch: returns `(epoch, num_epochs or None)` of the input, or None when it does not know
      (`BatchSource.epoch`); shown on the terminal bar.
    clock: seconds for the rates, the ETA and the redraw interval (`time.monotonic`).
  """

  def __init__(self, mode: str, every_n_steps: int = 100, terminal_secs: float = 1.0,
               stream: TextIO | None = None, fetch_loss: bool = True, show_loss: bool = True,
               epoch: Callable[[], tuple[int, int | None] | None] | None = None,
               clock: Callable[[], float] = time.monotonic):
    self.mode, self.every_n_steps, self.terminal_secs = mode, every_n_steps, terminal_secs
    self.stream = stream if stream is not None else sys.stderr
    self.fetch_loss, self.show_loss = fetch_loss, show_loss
    self.epoch = epoch
    self.clock = clock

  def begin(self):
    self._terminal = _on_terminal(self.stream) and (
        logger.level == logging.NOTSET or logger.isEnabledFor(logging.INFO))
    self._logging = not self._terminal and logger.isEnabledFor(logging.INFO)
    self._t0 = self._s0 = None        # timing starts after the first dispatch
    self._examples = 0
    self._last_draw = None
    self._drawn = False
    self._ctx = None
    self._shown_step = None

  def _due(self, ctx: StepContext) -> bool:
    if self._t0 is None:
      return True  # the first dispatch: wait for it so compilation is not timed
    if self._terminal:
      return ctx.is_last or self.clock() - self._last_draw >= self.terminal_secs
    return self._logging and (ctx.crossed(self.every_n_steps) or ctx.is_last)

  def before_step(self, ctx):
    if not (self._terminal or self._logging) or not self._due(ctx):
      return None
    return ['loss'] if self.fetch_loss else None

  def after_step(self, ctx, values):
    if not (self._terminal or self._logging):
      return
    now = self.clock()
    self._ctx = ctx
    if self._t0 is None:
      # The first dispatch's values were fetched, so the device finished it (and compiling).
      self._t0, self._s0, self._last_draw = now, ctx.step, now
      return
    self._examples += ctx.num_steps * ctx.batch_size
    if self._due(ctx) and (not self.fetch_loss or 'loss' in values):
      self._show(ctx, values.get('loss') if self.show_loss else None, now)

  def _rate(self, ctx, now) -> tuple[float | None, float | None]:
    elapsed = now - self._t0
    if elapsed <= 0 or ctx.step <= self._s0:
      return None, None
    steps_per_sec = (ctx.step - self._s0) / elapsed
    return self._examples / elapsed, steps_per_sec

  def _show(self, ctx, loss, now):
    rate, steps_per_sec = self._rate(ctx, now)
    verb = _VERBS.get(self.mode, self.mode)
    eta = None
    if ctx.total is not None and steps_per_sec:
      eta = str(datetime.timedelta(seconds=round(max(ctx.total - ctx.step, 0) / steps_per_sec)))
    self._last_draw = now
    self._shown_step = ctx.step
    if self._terminal:
      self.stream.write('\r' + self._bar(verb, ctx, loss, rate, eta) + '\x1b[K')
      self.stream.flush()
      self._drawn = True
      return
    parts = [f'step = {ctx.step}' + (f'/{ctx.total}' if ctx.total is not None else '')]
    if loss is not None:
      parts.append(f'loss = {float(loss):.6g}')
    if rate is not None:
      parts.append(f'examples/sec = {rate:.0f}')
    if eta is not None:
      parts.append(f'ETA {eta}')
    logger.info('%s', f'{verb}: ' + ', '.join(parts))

  def _bar(self, verb, ctx, loss, rate, eta) -> str:
    """The terminal line: a bar when the end is known, then epoch, rate, loss and ETA."""
    if ctx.total:
      done = min(ctx.step / ctx.total, 1.0)
      filled = int(done * BAR_WIDTH)
      width = len(str(ctx.total))
      parts = [f'{verb} [{"#" * filled}{"-" * (BAR_WIDTH - filled)}] '
               f'{ctx.step:>{width}}/{ctx.total} {done:4.0%}']
    else:
      parts = [f'{verb} step {ctx.step}']
    known = self.epoch() if self.epoch is not None else None
    if known is not None:
      epoch, epochs = known
      parts.append(f'epoch {epoch}' + (f'/{epochs}' if epochs is not None else ''))
    if rate is not None:
      parts.append(f'{rate:.0f} ex/s')
    if loss is not None:
      parts.append(f'loss {float(loss):.4g}')
    if eta is not None:
      parts.append(f'ETA {eta}')
    return '  '.join(parts)

  def end(self, state):
    ctx = self._ctx
    if ctx is not None and self._t0 is not None and ctx.step != self._shown_step:
      self._show(ctx, None, self.clock())  # the input ran out: the last step, without loss
    if self._terminal and self._drawn:
      self.stream.write('\n')
      self.stream.flush()


__all__ = ['ProgressHook']
