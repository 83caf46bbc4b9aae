"""Timed windows of steps for the benchmarks, measured again when the host disturbed them.

Plain Python (no JAX): ``benchmarks/pytorch_step.py`` times PyTorch with it too.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

# Windows whose slowest step is more than this slower than their fastest were disturbed
# (on a shared VM: the host's other load); they are measured again.
MAX_SPREAD = 0.10
ATTEMPTS = 3


def spread(per_step: Sequence[float]) -> float:
  """Slowest / fastest - 1 of the windows' seconds per step (0 for one window)."""
  return max(per_step) / min(per_step) - 1.0


def summary(batch_size: int, per_step: Sequence[float], attempts: int) -> dict[str, Any]:
  """What a benchmark record reports of timed windows: images/s of the median window with the
  slowest and fastest, its ms/step, the spread and the attempts."""
  ips = sorted(batch_size / t for t in per_step)
  return {"images_per_s": round(statistics.median(ips), 2),
          "images_per_s_min": round(ips[0], 2), "images_per_s_max": round(ips[-1], 2),
          "step_ms": round(1e3 * statistics.median(per_step), 3),
          "spread": round(spread(per_step), 4), "attempts": attempts}


def time_windows(run_step: Callable[[Any], Any], carry: Any, *, steps: int, windows: int,
                 warmup: int, wait: Callable[[Any], Any] = lambda carry: carry,
                 attempts: int = ATTEMPTS, max_spread: float = MAX_SPREAD,
                 clock: Callable[[], float] = time.perf_counter
                 ) -> tuple[list[float], int, Any]:
  """``(seconds per step of each window, attempts made, final carry)``.

  ``warmup`` untimed calls ``carry = run_step(carry)``, then ``windows`` windows of ``steps``
  calls, each window ending with ``wait(carry)`` (e.g. ``jax.block_until_ready``: the steps
  are chained through the carry, so the device ran every step of the window). When the
  windows spread more than ``max_spread`` (see ``spread``), all of them are measured again,
  at most ``attempts`` times in all; the attempt with the least spread is returned.
  """
  for _ in range(warmup):
    carry = run_step(carry)
  wait(carry)
  best: list[float] | None = None
  attempt = 0
  while attempt < max(1, attempts):
    attempt += 1
    per_step = []
    for _ in range(windows):
      t0 = clock()
      for _ in range(steps):
        carry = run_step(carry)
      wait(carry)
      per_step.append((clock() - t0) / steps)
    if best is None or spread(per_step) < spread(best):
      best = per_step
    if spread(best) <= max_spread:
      break
  return best, attempt, carry
