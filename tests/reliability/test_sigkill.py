"""SIGKILL at 10 random moments (checkpoints every 2 steps, so several land while one is being
written): each time the same command resumes from the last complete checkpoint, and the run
ends bit-identical to one never interrupted (CPU)."""
import glob
import os
import random
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
  return [sys.executable, "-m", "kd_jax.train", "--config=configs/digits/supervised.py",
          f"--workdir={workdir}", "--config.num_epochs=3", "--config.log_every_steps=1",
          "--config.checkpoint_every_steps=2"]


def _logged_step(text):
  steps = [int(s) for s in re.findall(r"^step (\d+):", text, re.M)]
  return max(steps) if steps else 0


@pytest.mark.slow
def test_ten_random_sigkills_then_resume_end_bit_identical(tmp_path):
  straight = tmp_path / "straight"
  subprocess.run(_cmd(straight), cwd=REPO, check=True, capture_output=True, timeout=600)

  rng = random.Random(0)
  run = tmp_path / "killed"
  targets = sorted(rng.sample(range(2, TOTAL - 2), 10))
  resumed_from = []
  for i, target in enumerate(targets):
    out = tmp_path / f"out{i}.txt"
    with open(out, "w") as log:
      proc = subprocess.Popen(_cmd(run), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
      deadline = time.time() + 300
      while time.time() < deadline and proc.poll() is None and _logged_step(out.read_text()) < target:
        time.sleep(0.01)
      time.sleep(rng.uniform(0.0, 0.05))  # Somewhere in the next step or its save.
      proc.send_signal(signal.SIGKILL)
      proc.wait()
    text = out.read_text()
    match = re.search(r"resuming from the checkpoint at step (\d+)", text)
    resumed_from.append(int(match.group(1)) if match else 0)
  final = subprocess.run(_cmd(run), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
  # The restarts resumed from complete checkpoints (the first one and any killed before the
  # step-2 checkpoint was final start from 0).
  assert sum(s > 0 for s in resumed_from) >= 8, resumed_from
  assert not glob.glob(f"{run}/checkpoints/*tmp*")  # No half-written step left visible.
  a, _ = checkpoint.load_model_variables(str(straight))
  b, _ = checkpoint.load_model_variables(str(run))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
