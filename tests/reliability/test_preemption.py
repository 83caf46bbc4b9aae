"""Preemption for real: a training process gets SIGTERM mid-epoch, writes a checkpoint at the
step it reached, exits 0; the same command resumes and ends bit-identical to a run never
interrupted (CPU)."""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from kd_jax.training import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOTAL = 66  # 3 epochs x 22 steps


def _cmd(workdir):
  # Checkpoints only at the end: what the preempted run resumes from is its SIGTERM save.
  return [sys.executable, "-m", "kd_jax.train", "--config=configs/digits/supervised.py",
          f"--workdir={workdir}", "--config.num_epochs=3", "--config.log_every_steps=1",
          "--config.checkpoint_every_steps=1000"]


def _steps(workdir):
  return sorted(int(os.path.basename(p)) for p in glob.glob(f"{workdir}/checkpoints/*")
                if os.path.basename(p).isdigit())


@pytest.mark.slow
def test_sigterm_checkpoints_exits_zero_and_the_same_command_resumes_bit_identically(tmp_path):
  straight = tmp_path / "straight"
  subprocess.run(_cmd(straight), cwd=REPO, check=True, capture_output=True, timeout=600)

  run = tmp_path / "preempted"
  log = open(tmp_path / "out.txt", "w")
  proc = subprocess.Popen(_cmd(run), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + 300
  while time.time() < deadline:  # Until the run is in its second epoch.
    logged = [int(s) for s in re.findall(r"^step (\d+):", (tmp_path / "out.txt").read_text(), re.M)]
    if logged and max(logged) >= 30:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 0
  log.close()
  out = (tmp_path / "out.txt").read_text()
  match = re.search(r"kd_jax: preempted at step (\d+)/66: checkpoint saved in (\S+)/(\d+); "
                    r"run the same command to resume", out)
  assert match, out[-2000:]
  stopped = int(match.group(1))
  assert 30 <= stopped < TOTAL and stopped % 22 != 0  # Mid-epoch.
  assert _steps(run) == [stopped] and not os.path.exists(run / "results.json")

  resumed = subprocess.run(_cmd(run), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert (f"resuming from the checkpoint at step {stopped} (epoch {stopped // 22 + 1}, "
          f"batch {stopped % 22})") in resumed.stdout
  a, _ = checkpoint.load_model_variables(str(straight))
  b, _ = checkpoint.load_model_variables(str(run))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
