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


class Progress:
  """clu's ReportProgress (steps/s to TensorBoard) plus a console line:
  ``[run] 120/900 epoch 3/20 | 850 img/s | ETA 0:00:42 | loss 0.312``."""

  def __init__(self, total_steps: int, steps_per_epoch: int, batch_size: int,
               writer: metric_writers.MetricWriter, run_name: str, first_step: int,
               every_steps: int):
    self.total, self.spe, self.batch = total_steps, steps_per_epoch, batch_size
    self.prefix = f"[{run_name}] " if run_name else ""
    self.report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                                  every_steps=every_steps, every_secs=None)
    self._t, self._step = time.monotonic(), first_step

  def tick(self, step: int) -> None:
    """Call after every step (cheap: writes steps/s to TensorBoard every ``every_steps``)."""
    self.report(step, time.monotonic())

  def __call__(self, step: int, loss: float) -> None:
    """Prints the progress line."""
    now = time.monotonic()
    rate = (step - self._step) / max(now - self._t, 1e-9)
    self._t, self._step = now, step
    eta = (self.total - step) / rate if rate > 0 else 0.0
    if jax.process_index() == 0:
      print(f"{self.prefix}{step}/{self.total} epoch {min(step // self.spe + 1, self.total // self.spe)}"
            f"/{self.total // self.spe} | {rate * self.batch:.0f} img/s | "
            f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))} | loss {loss:.4f}",
            file=sys.stdout, flush=True)
