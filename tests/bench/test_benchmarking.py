"""The benchmark measures what it says: each step once compiled, timed, and reported."""
import json
import os
import re
import subprocess
import sys

import pytest

from kd_jax.errors import KdJaxError
from kd_jax.bench import benchmarking, timing
from kd_jax import dry_run, recipes


def _config():
  cfg = recipes.digits_distill("kd")
  return cfg


def test_a_benchmark_reports_every_measurement_with_its_context():
  lines = []
  records = benchmarking.run(_config(), steps=1, windows=2, warmup=0, batch_size=32,
                             methods="kd,ab", teacher_cache=True, print_fn=lines.append)
  kinds = [(r["measurement"], r["method"]) for r in records]
  assert kinds == [("student_step", "ce"), ("teacher_forward", "teacher"),
                   ("distill_step", "kd"), ("cached_step", "kd"), ("distill_step", "ab"),
                   ("student_step", "ce"), ("teacher_forward", "teacher"),  # timed again
                   ("pipeline_only", "kd"), ("pipeline", "kd")]
  assert [bool(r.get("repeat")) for r in records] == [False] * 5 + [True] * 2 + [False] * 2
  for r in records:
    assert r["images_per_s_min"] <= r["images_per_s"] <= r["images_per_s_max"]
    assert r["spread"] == pytest.approx(r["images_per_s_max"] / r["images_per_s_min"] - 1,
                                        abs=1e-3)
    assert 1 <= r["attempts"] <= 3 and r["max_spread"] == 0.1
    assert r["batch_size"] == 32 and r["device_count"] >= 1 and r["jax_version"]
    assert r["input_shape"] == [8, 8, 1] and r["dtype"] == "float32"
    assert r["cpu_model"] and r["cpu_cores"] >= 1 and isinstance(r["cpu_vector"], list)
    json.loads(benchmarking.json_line(r))
  kd, cached, ab = records[2], records[3], records[4]
  # Each network's time: the mean of its timing before and after the methods.
  student = (records[0]["step_ms"] + records[5]["step_ms"]) / 2
  teacher = (records[1]["step_ms"] + records[6]["step_ms"]) / 2
  assert kd["overhead"] == pytest.approx(kd["step_ms"] / (student + teacher), rel=1e-2)
  assert kd["compile_s"] > 0 and kd["memory_bytes"] > 0
  assert cached["cached_outputs"] == {"teacher": ["logits"]}
  assert kd["overhead_beyond_objectives"] == pytest.approx(
      kd["step_ms"] / (teacher + cached["step_ms"]), rel=1e-2)
  assert "overhead_beyond_objectives" not in ab  # No teacher, no cached step.
  assert ab["teacher_in_step"] is False  # AB acts through its initialisation stage.
  assert ab["overhead"] == pytest.approx(ab["step_ms"] / student, rel=1e-2)
  assert any(l.startswith("overhead = distill_step / (teacher_forward + student_step)")
             for l in lines)
  # FLOPs by XLA's count of native convolutions, as the dry run's estimates count them.
  teacher = benchmarking.bench_plan(_config(), 32).teacher_modules()["teacher"]
  assert records[1]["flops"] == pytest.approx(
      dry_run._model_flops(teacher, (8, 8, 1), 32, False, {}), rel=1e-4)
  networks = records[0]["flops"] + records[1]["flops"]
  assert networks < kd["flops"] < 1.02 * networks  # KD adds two softmaxes to the networks.
  assert kd["overhead_per_flop"] == pytest.approx(kd["overhead"] / kd["flop_ratio"], rel=1e-2)
  assert records[-1]["vs_device_resident"] > 0


def test_rounds_time_the_networks_and_every_step_in_turn_and_the_overheads_use_medians(
    fast_compilation, monkeypatch):
  """Each timing scripted (one window of one step each, in the order they are taken): KD's
  step 3, 1, 2 s and DKD's 5, 3, 4 s over the rounds, the student 0.4, 0.1, 0.2, 0.3 s and
  the teacher 0.9, 0.6, 0.7, 0.8 s; so KD's overhead is median 2 / (0.25 + 0.75) = 2 and
  DKD's 4 (their first timings would give 3 and 5)."""
  seconds = iter([0.4, 0.9, 3.0, 5.0,             # Before: student, teacher, KD, DKD.
                  0.1, 0.6, 1.0, 3.0, 0.2, 0.7,   # Rounds: the networks, then the methods.
                  2.0, 4.0, 0.3, 0.8])
  real = timing.time_windows

  def scripted(run_step, carry, **kwargs):  # The steps still run; the clock is scripted.
    ticks = iter([0.0, next(seconds)])
    return real(run_step, carry, clock=lambda: next(ticks), **kwargs)
  monkeypatch.setattr(timing, "time_windows", scripted)
  lines = []
  records = benchmarking.run(_config(), steps=1, windows=1, warmup=0, batch_size=32,
                             methods="kd,dkd", pipeline=False, rounds=3, print_fn=lines.append)
  assert next(seconds, None) is None  # Every timing taken, none more.
  assert [(r["measurement"], r["method"], r.get("round"), r["step_ms"]) for r in records] == [
      ("student_step", "ce", None, 400), ("teacher_forward", "teacher", None, 900),
      ("distill_step", "kd", None, 3000), ("distill_step", "dkd", None, 5000),
      ("student_step", "ce", 1, 100), ("teacher_forward", "teacher", 1, 600),
      ("distill_step", "kd", 2, 1000), ("distill_step", "dkd", 2, 3000),
      ("student_step", "ce", 2, 200), ("teacher_forward", "teacher", 2, 700),
      ("distill_step", "kd", 3, 2000), ("distill_step", "dkd", 3, 4000),
      ("student_step", "ce", 3, 300), ("teacher_forward", "teacher", 3, 800)]
  kd, dkd = records[2], records[3]
  assert (kd["rounds"], kd["step_ms_median"], kd["overhead"]) == (3, 2000, 2.0)
  assert (dkd["rounds"], dkd["step_ms_median"], dkd["overhead"]) == (3, 4000, 4.0)
  assert any("medians: the networks' 4 timings, each distill step's 3" in l for l in lines)


def test_seeds_are_timed_side_by_side_in_both_modes_both_ways_with_their_gain(fast_compilation):
  lines = []
  records = benchmarking.run(_config(), steps=1, windows=2, warmup=0, batch_size=32,
                             methods="crd", pipeline=False, seeds=3, print_fn=lines.append)
  one = next(r for r in records if r["measurement"] == "distill_step")
  seeds = [r for r in records if r["measurement"] == "seeds_step"]
  assert [(r["method"], r["seeds"], r["seed_batches"], r["seed_compute"]) for r in seeds] == [
      ("crd/share/vmap", 3, "shared", "vmap"), ("crd/share/loop", 3, "shared", "loop"),
      ("crd/indep/vmap", 3, "independent", "vmap"), ("crd/indep/loop", 3, "independent", "loop")]
  for r in seeds:
    assert r["images_per_s"] == pytest.approx(32 / (r["step_ms"] / 1000), rel=0.05)
    assert r["images_per_s_all_seeds"] == pytest.approx(3 * r["images_per_s"], rel=1e-3)
    assert r["gain"] == pytest.approx(3 * one["step_ms"] / r["step_ms"], rel=1e-2)
  # The teacher once per batch: fewer FLOPs in shared mode than in independent mode; the
  # same arithmetic vmapped or looped.
  assert seeds[0]["flops"] == seeds[1]["flops"] < seeds[2]["flops"] == seeds[3]["flops"]
  assert any(line.startswith("3 seeds side by side") for line in lines)


def test_unknown_methods_are_refused_in_one_line():
  with pytest.raises(KdJaxError, match="--methods: unknown nope; valid: all, kd, "):
    benchmarking.run(_config(), methods="kd,nope", print_fn=lambda _: None)


@pytest.mark.parametrize("bad", [dict(attempts=0), dict(max_spread=-0.1), dict(windows=0),
                                 dict(rounds=0)])
def test_timing_settings_out_of_range_are_refused_in_one_line(bad):
  with pytest.raises(KdJaxError, match="--steps, --windows, --attempts and --rounds must be >= 1"):
    benchmarking.run(_config(), print_fn=lambda _: None, **bad)


def test_the_pytorch_baseline_times_the_same_measurements():
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run(
      [sys.executable, os.path.join("benchmarks", "pytorch_step.py"), "--batch=2", "--steps=1",
       "--windows=2", "--warmup=0", "--negatives=8", "--bank=50"],
      cwd=root, capture_output=True, text=True, timeout=300, check=True)
  records = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
  assert [(r["measurement"], r["method"]) for r in records] == [
      ("teacher_forward", "teacher"), ("student_step", "ce"), ("distill_step", "kd"),
      ("distill_step", "crd"), ("distill_step", "reviewkd")]
  base = records[0]["step_ms"] + records[1]["step_ms"]
  for r in records[2:]:
    assert r["overhead"] == pytest.approx(r["step_ms"] / base, rel=1e-2)
  for r in records:
    assert r["framework"] == "pytorch" and r["batch_size"] == 2 and r["windows"] == 2
    assert 1 <= r["attempts"] <= 3 and r["spread"] >= 0
    assert 0 < r["images_per_s_min"] <= r["images_per_s"] <= r["images_per_s_max"]


def test_the_vit_parts_benchmark_times_each_part_in_both_frameworks_in_one_round():
  """benchmarks/vit_parts.py on a tiny block: PyTorch, kd_jax, PyTorch for the attention, the
  MLP and the block; the same parts of another tree's vit.py (here this one's) in turn with
  this tree's; both GELU forms; each matmul in both frameworks, with its GFLOP/s."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run(
      [sys.executable, os.path.join("benchmarks", "vit_parts.py"), "--batch=2", "--tokens=5",
       "--width=16", "--heads=2", "--calls=1", f"--baseline_tree={root}"],
      cwd=root, capture_output=True, text=True, timeout=300, check=True)
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("host CPU: ")
  part = r"(\w+)\s+(\w+)\s+forward\s+([\d.]+) ms\s+forward \+ backward\s+([\d.]+) ms"
  parts = [re.fullmatch(part, line) for line in lines if " forward + backward " in line]
  assert [(m[1], m[2]) for m in parts] == [
      (f, p) for f in ("pytorch", "kd_jax", "pytorch") for p in ("attention", "mlp", "block")]
  assert all(float(m[3]) > 0 and float(m[4]) > 0 for m in parts)
  in_turn = [line.split()[2] for line in lines if line.startswith("in turn ")]
  assert in_turn == ["attention", "mlp", "block"]
  assert [line.split(": ")[1].split("  ")[0] for line in lines
          if line.startswith("gelu on [10, 64]")] == ["jax.nn.gelu (erfc)", "vit.gelu (erf)"]
  matmul = r"matmul (.+?)\s+kd_jax\s+([\d.]+) ms \(\s*(\d+) GFLOP/s\)\s+pytorch\s+([\d.]+) ms"
  matmuls = [re.search(matmul, line) for line in lines if line.startswith("matmul ")]
  assert [m[1] for m in matmuls] == [
      "tokens x qkv weight", "tokens x fc1 weight", "hidden x fc2 weight", "fc1 weight gradient",
      "q k^T (per head)", "weights v (per head)", "dv = weights^T d_out"]
  assert all(float(m[2]) > 0 and float(m[4]) > 0 for m in matmuls)
