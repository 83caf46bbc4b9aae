"""Timed windows: the median-window timing of the benchmarks, measured again when the windows
disagree (a busy host). A fake clock that each step advances by a given duration."""
import pytest

from kd_jax.bench import timing


class _FakeSteps:
  """``step(carry)`` advances the clock by the next of ``durations`` and counts the calls."""

  def __init__(self, durations):
    self.durations, self.now, self.calls, self.waits = list(durations), 0.0, 0, 0

  def clock(self):
    return self.now

  def step(self, carry):
    self.now += self.durations[self.calls]
    self.calls += 1
    return carry + 1

  def wait(self, carry):
    self.waits += 1
    return carry


def _time(fake, **kw):
  kw = {"steps": 2, "windows": 3, "warmup": 1, **kw}
  return timing.time_windows(fake.step, 0, wait=fake.wait, clock=fake.clock, **kw)


def test_the_spread_is_the_slowest_over_the_fastest_minus_one():
  assert timing.spread([0.2, 0.1, 0.15]) == pytest.approx(1.0)
  assert timing.spread([0.3]) == 0.0


def test_steady_windows_are_measured_once_after_the_untimed_warmup():
  fake = _FakeSteps([9.0] + [1.0] * 6)  # The warm-up step is slow and not timed.
  per_step, attempts, carry = _time(fake)
  assert per_step == [1.0, 1.0, 1.0] and attempts == 1
  assert carry == 7 and fake.calls == 7
  assert fake.waits == 1 + 3  # After the warm-up, then at each window's end.


def test_disturbed_windows_are_measured_again_and_the_steady_attempt_is_returned():
  # Windows of 2 steps: the first attempt's middle window is twice as slow (spread 1.0).
  fake = _FakeSteps([1.0] + [1.0, 1.0, 2.0, 2.0, 1.0, 1.0] + [1.0, 1.0, 1.0, 1.0, 1.05, 1.05])
  per_step, attempts, _ = _time(fake)
  assert attempts == 2
  assert per_step == pytest.approx([1.0, 1.0, 1.05])


def test_windows_noisy_in_every_attempt_give_the_least_spread_one():
  first, second, third = [1, 1, 3, 3, 1, 1], [1, 1, 1.5, 1.5, 1, 1], [2, 2, 1, 1, 1, 1]
  fake = _FakeSteps([1.0] + first + second + third)
  per_step, attempts, _ = _time(fake)
  assert attempts == 3
  assert per_step == pytest.approx([1.0, 1.5, 1.0])
  assert fake.calls == 1 + 18


def test_one_attempt_never_measures_again():
  fake = _FakeSteps([1.0] + [1, 1, 3, 3, 1, 1])
  per_step, attempts, _ = _time(fake, attempts=1)
  assert attempts == 1 and per_step == pytest.approx([1.0, 3.0, 1.0])


def test_a_summary_reports_the_median_window_in_images_per_second():
  # 32 images per step; windows of 0.5, 0.25 and 0.4 s per step.
  assert timing.summary(32, [0.5, 0.25, 0.4], attempts=2) == {
      "images_per_s": 80.0, "images_per_s_min": 64.0, "images_per_s_max": 128.0,
      "step_ms": 400.0, "spread": 1.0, "attempts": 2}
