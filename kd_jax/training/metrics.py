"""Writers and progress: TensorBoard event files plus one readable console line per report
(clu.metric_writers), and a progress line with rate and ETA (clu.periodic_actions)."""
from __future__ import annotations

import sys
import time
from typing import Mapping

import jax
from clu import metric_writers, periodic_actions


class ConsoleWriter(metric_writers.LoggingWriter):
  """Prints ``[run] step N: key=value ...`` to stdout (process 0 only)."""

  def __init__(self, prefix: str = ""):
    super().__init__()
    self._prefix = f"[{prefix}] " if prefix else ""

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    shown = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(scalars.items()))
    print(f"{self._prefix}step {step}: {shown}", flush=True)


def create_writers(workdir: str, run_name: str):
  """``(writer, tensorboard_writer)``: the first writes TensorBoard events in ``workdir`` and
  console lines, the second TensorBoard only; both silent on processes other than 0."""
  if jax.process_index() > 0:
    return metric_writers.MultiWriter([]), metric_writers.MultiWriter([])
  tensorboard = metric_writers.AsyncWriter(metric_writers.SummaryWriter(workdir))
  return metric_writers.MultiWriter([tensorboard, ConsoleWriter(run_name)]), tensorboard


class LiveStdout:
  """Standard output on a terminal with one live line kept below everything else printed:
  each write first erases the live line, and each finished line is followed by it again."""

  def __init__(self, stream):
    self.stream = stream
    self._line, self._shown = "", False

  def write(self, text: str) -> int:
    if self._shown:
      self.stream.write("\r\x1b[K")
      self._shown = False
    self.stream.write(text)
    if self._line and text.endswith("\n"):
      self.stream.write(self._line)
      self._shown = True
    return len(text)

  def show(self, line: str) -> None:
    """Replaces the live line."""
    self._line = line
    self.stream.write(("\r\x1b[K" if self._shown else "") + line)
    self._shown = True
    self.stream.flush()

  def finish(self) -> None:
    """Leaves the live line as the last printed line."""
    if self._shown:
      self.stream.write("\n")
    self._line, self._shown = "", False
    self.stream.flush()

  def flush(self) -> None:
    self.stream.flush()

  def __getattr__(self, name):  # isatty, fileno, encoding, ...
    return getattr(self.stream, name)


class Progress:
  """clu's ReportProgress (steps/s to TensorBoard) plus the progress line
  ``[run] 120/900 epoch 3/20 | 850 img/s | ETA 0:00:42 | loss 0.312``: on a terminal one
  live line, redrawn in place at most every ``redraw_s`` seconds, below the metric lines;
  elsewhere (a file, a CI log) one plain line per report. A context manager: the live
  line ends with the run."""

  def __init__(self, total_steps: int, steps_per_epoch: int, batch_size: int,
               writer: metric_writers.MetricWriter, run_name: str, first_step: int,
               every_steps: int, live: bool | None = None, redraw_s: float = 0.5):
    self.total, self.spe, self.batch = total_steps, steps_per_epoch, batch_size
    self.prefix = f"[{run_name}] " if run_name else ""
    self.report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                                  every_steps=every_steps, every_secs=None)
    self._t, self._step = time.monotonic(), first_step
    self._loss: float | None = None
    self._drawn, self._redraw_s = 0.0, redraw_s
    if live is None:
      live = jax.process_index() == 0 and sys.stdout.isatty()
    self._live: LiveStdout | None = None
    self._stdout = sys.stdout
    if live:
      self._live = LiveStdout(sys.stdout)
      sys.stdout = self._live

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    if self._live is not None:
      self._live.finish()
      sys.stdout = self._stdout
      self._live = None

  def _line(self, step: int, rate: float) -> str:
    eta = (self.total - step) / rate if rate > 0 else 0.0
    loss = "" if self._loss is None else f" | loss {self._loss:.4f}"
    return (f"{self.prefix}{step}/{self.total} epoch {min(step // self.spe + 1, self.total // self.spe)}"
            f"/{self.total // self.spe} | {rate * self.batch:.0f} img/s | "
            f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}{loss}")

  def _rate(self, step: int, now: float) -> float:
    return (step - self._step) / max(now - self._t, 1e-9)

  def tick(self, step: int) -> None:
    """Call after every step (cheap: writes steps/s to TensorBoard every ``every_steps``; on
    a terminal redraws the live line with the last reported loss)."""
    now = time.monotonic()
    self.report(step, now)
    if self._live is not None and now - self._drawn >= self._redraw_s and step > self._step:
      self._live.show(self._line(step, self._rate(step, now)))
      self._drawn = now

  def __call__(self, step: int, loss: float) -> None:
    """Reports: the progress line with this loss and the rate since the last report."""
    now = time.monotonic()
    rate = self._rate(step, now)
    self._t, self._step, self._loss = now, step, loss
    if jax.process_index() != 0:
      return
    if self._live is not None:
      self._live.show(self._line(step, rate))
      self._drawn = now
    else:
      print(self._line(step, rate), file=sys.stdout, flush=True)
