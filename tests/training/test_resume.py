"""End to end through the command line: SIGKILL half-way, the same command resumes and ends
where an uninterrupted run ends; the default job prints its table and writes its files."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from kd_jax.training import checkpoint

from tests.commands import REPO, checkpoint_steps, train_command



def _cmd(workdir, *extra):
  return train_command(workdir, "--config.num_epochs=6", "--config.checkpoint_every_steps=5",
                       "--config.log_every_steps=5", *extra)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
  straight = tmp_path / "straight"
  subprocess.run(_cmd(straight), cwd=REPO, check=True, capture_output=True, timeout=600)

  killed = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(killed), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and not any(s >= 60 for s in checkpoint_steps(killed)):
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps_at_kill = checkpoint_steps(killed)
  assert steps_at_kill and max(steps_at_kill) < 132, steps_at_kill  # 6 epochs x 22 steps

  resumed = subprocess.run(_cmd(killed), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resuming from the checkpoint at step {max(steps_at_kill)}" in resumed.stdout

  a = json.load(open(straight / "results.json"))
  b = json.load(open(killed / "results.json"))
  assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.001
  va, _ = checkpoint.load_model_variables(str(straight))
  vb, _ = checkpoint.load_model_variables(str(killed))
  for x, y in zip(jax.tree.leaves(va), jax.tree.leaves(vb)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_default_job_prints_table_and_writes_outputs(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "kd_jax.train", f"--workdir={tmp_path}",
                         "--config.num_epochs=2"], cwd=REPO, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = proc.stdout
  assert "run              model     objectives       test acc %" in out
  for run in ("teacher", "kd_student", "scratch_student"):
    assert os.path.exists(tmp_path / run / "results.json")
    assert glob.glob(str(tmp_path / run / "events.out.tfevents.*"))
    assert checkpoint_steps(tmp_path / run) == [22, 44]
  summary = json.load(open(tmp_path / "results.json"))
  assert set(summary["runs"]) == {"teacher", "kd_student", "scratch_student"}
  assert summary["runs"]["kd_student"]["objectives"] == {"ce": 0.1, "kd": 0.9}
  assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in summary["runs"].values())
