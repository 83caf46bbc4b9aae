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


def eager_table(steps: dict[tuple[str, str], Callable[[], Any]], batch_size: int,
                common: dict[str, Any], *, steps_per_window: int, windows: int, warmup: int,
                attempts: int = ATTEMPTS, max_spread: float = MAX_SPREAD,
                print_fn: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Times each ``(measurement, method) -> step`` of an eager framework (a step has finished
  when it returns: PyTorch on CPU), printing the table ``kd_jax.benchmark`` prints and then
  ``overhead = distill_step / (teacher_forward + student_step)``; one record per step (with
  ``common``), then the JSON lines are the caller's."""
  print_fn(f"{'measurement':<16} {'method':<8} {'images/s':>9} (min-max) {'ms/step':>10} "
           f"{'spread %':>8}")
  records = []
  for (measurement, method), step in steps.items():
    per_step, made, _ = time_windows(
        lambda _, step=step: step(), None, steps=steps_per_window, windows=windows,
        warmup=warmup, attempts=attempts, max_spread=max_spread)
    rec = {"measurement": measurement, "method": method,
           **summary(batch_size, per_step, made), **common}
    records.append(rec)
    print_fn(f"{measurement:<16} {method:<8} {rec['images_per_s']:>9.1f} "
             f"({rec['images_per_s_min']:.1f}-{rec['images_per_s_max']:.1f}) "
             f"{rec['step_ms']:>10.1f} {100 * spread(per_step):>8.1f}"
             f"{f' (x{made})' if made > 1 else ''}"
             f"{' noisy' if spread(per_step) > max_spread else ''}")
  ms = {(r["measurement"], r["method"]): r["step_ms"] for r in records}
  base = ms[("teacher_forward", "teacher")] + ms[("student_step", "ce")]
  print_fn("overhead = distill_step / (teacher_forward + student_step), as kd_jax.benchmark:")
  for rec in records:
    if rec["measurement"] == "distill_step":
      rec["overhead"] = round(rec["step_ms"] / base, 3)
      print_fn(f"  {rec['method']:<8} {rec['overhead']:.3f}")
  return records
