"""Preemption: SIGTERM, what TPU and GPU schedulers send before they take a machine away,
asks the train loop to stop after its current step; the loop then writes a checkpoint and
raises ``kd_jax.errors.Preempted`` (the entrypoints print it and exit 0; the same command
resumes from that checkpoint).

One process: a Python SIGTERM handler sets a flag the loop reads after every step. Several
processes: JAX's own preemption notice (the coordination service's sync point, which makes
every host stop at the same step) through orbax's ``reached_preemption``; no Python handler
is installed there, so that JAX's stays in place.
"""
from __future__ import annotations

import signal
import sys
import threading

import jax


class Preemption:
  """Context manager: within it, SIGTERM requests a stop (``reached(step, manager)``)."""

  def __init__(self, tag: str = ""):
    self.tag = tag
    self.requested = False
    self._previous = None

  def __enter__(self) -> "Preemption":
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _handle(self, signum, frame) -> None:
    del signum, frame
    if not self.requested:
      print(f"{self.tag}SIGTERM: stopping after this step (a checkpoint is written first)",
            file=sys.stdout, flush=True)
    self.requested = True

  def reached(self, step: int, manager) -> bool:
    """Whether to stop now, after ``step`` (the same answer on every process)."""
    if jax.process_count() > 1:
      return bool(manager.reached_preemption(step))
    return self.requested
