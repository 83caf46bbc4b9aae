"""SIGKILL at 10 points of a run, half of them while a checkpoint is being written
(checkpoints every 2 steps; the kill comes from inside the run, ``KD_JAX_FAULT``, right
after the step or right after orbax was handed the step's checkpoint): each time the same
command resumes from the last complete checkpoint, never from the partial one, and the run
ends bit-identical to one never interrupted (CPU)."""
import os
import random
import re
import shutil
import signal
import subprocess

import pytest

from kd_jax import checkpoint

from tests import forkserver
from tests.commands import (REPO, assert_same_final_params, checkpoint_steps,
                            partial_checkpoints, train_command)

TOTAL = 66  # 3 epochs x 22 steps


def _cmd(workdir, checkpoint_every_steps=2):
  return train_command(workdir, "--config.num_epochs=3", "--config.log_every_steps=1",
                       f"--config.checkpoint_every_steps={checkpoint_every_steps}")


def _kill(run, log_path, point, step):
  """Runs the command with a SIGKILL at ``point`` of ``step``; returns what the kill left."""
  env = {**os.environ, "KD_JAX_FAULT": f"SIGKILL@{point}:{step}"}
  with open(log_path, "w") as log:
    proc = forkserver.run(_cmd(run), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                          timeout=600, check=False)
  assert proc.returncode == -signal.SIGKILL, log_path.read_text()[-2000:]
  return {"point": f"{point}:{step}", "partial": partial_checkpoints(run),
          "complete": checkpoint_steps(run)}


@pytest.mark.slow
def test_ten_sigkills_some_mid_write_then_resume_end_bit_identical(tmp_path):
  # A fresh interpreter that checkpoints once an epoch (how often a run checkpoints changes
  # nothing it computes): what the forked runs must match.
  straight = tmp_path / "straight"
  subprocess.run(_cmd(straight, -1), cwd=REPO, check=True, capture_output=True, timeout=600)

  # Ten increasing steps; every second kill lands on a checkpointed (even) step, mid-write.
  halves = sorted(random.Random(0).sample(range(1, TOTAL // 2 - 1), 10))
  points = [("save", 2 * h) if i % 2 else ("step", 2 * h - 1) for i, h in enumerate(halves)]
  run = tmp_path / "killed"
  kills = []
  for i, (point, step) in enumerate(points):
    log_path = tmp_path / f"out{i}.txt"
    kills.append(_kill(run, log_path, point, step))
    if i:  # What this start resumed from: the last checkpoint complete at the previous kill.
      match = re.search(r"resuming from the checkpoint at step (\d+)", log_path.read_text())
      kills[-1]["resumed_from"] = int(match.group(1)) if match else 0
  final = forkserver.run(_cmd(run), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
  final_from = int(re.search(r"resuming from the checkpoint at step (\d+)", final.stdout).group(1))
  print("kills:", *kills, f"final run resumed from {final_from}", sep="\n  ")

  # Every kill inside a write left that step's checkpoint unfinalised.
  for kill, (point, step) in zip(kills, points):
    if point == "save":
      assert any(p.startswith(f"{step}.") for p in kill["partial"]), kill
  resumed = [k.get("resumed_from") for k in kills[1:]] + [final_from]
  for before, resumed_from in zip(kills, resumed):
    # Each start resumed from the newest complete checkpoint the kill before it left, never
    # from the half-written step (whose number is higher).
    assert resumed_from == max(before["complete"], default=0), (before, resumed_from)
    for name in before["partial"]:
      assert int(name.split(".")[0]) > resumed_from
  assert not partial_checkpoints(run)  # The half-written steps were cleaned up.
  assert_same_final_params(straight, run)


def test_seeds_killed_mid_write_and_between_seeds_resume_every_seed_bit_identical(tmp_path):
  """Seeds 0, 1, 2 side by side (independent batches), killed while step 10's checkpoints are
  written; then seed 2's newest complete checkpoint removed, as a kill between two seeds'
  writes leaves it: every seed resumes from the newest step all three hold, and each ends
  bit-identical to a run never interrupted."""
  cmd = lambda workdir, every=2: train_command(
      workdir, "--config.num_epochs=1", "--config.seeds=0,1,2",
      "--config.seed_batches=independent", f"--config.checkpoint_every_steps={every}",
      "--config.log_every_steps=1")
  straight, run = tmp_path / "straight", tmp_path / "killed"
  subprocess.run(cmd(straight, -1), cwd=REPO, check=True, capture_output=True, timeout=600)
  env = {**os.environ, "KD_JAX_FAULT": "SIGKILL@save:10"}
  killed = forkserver.run(cmd(run), cwd=REPO, capture_output=True, env=env, timeout=600,
                          check=False)
  assert killed.returncode == -signal.SIGKILL
  newest = [max(checkpoint_steps(run / f"seed{k}"), default=0) for k in range(3)]
  shutil.rmtree(run / "seed2" / "checkpoints" / str(newest[2]))
  common = min(newest[:2] + [max(checkpoint_steps(run / "seed2"), default=0)])
  final = forkserver.run(cmd(run), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
  assert f"resuming from the checkpoint at step {common} (" in final.stdout
  for k in range(3):
    assert not partial_checkpoints(run / f"seed{k}")
    assert_same_final_params(straight / f"seed{k}", run / f"seed{k}")


def test_opening_a_workdir_removes_the_partial_checkpoints_a_kill_left(tmp_path):
  for name in ("checkpoints/4.orbax-checkpoint-tmp/state", "checkpoints/2/state",
               "best/4.orbax-checkpoint-tmp-1700000000/model"):
    os.makedirs(tmp_path / name)
  checkpoint.Checkpoints(str(tmp_path), keep=3).close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  assert os.listdir(tmp_path / "best") == []
