"""Preemption for real: a training process gets SIGTERM mid-epoch (of the main stage, or of an
initialisation stage), writes a checkpoint at the step it reached, exits 0; the same command
resumes and ends bit-identical to a run never interrupted (CPU)."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests.commands import (REPO, assert_same_final_params, checkpoint_steps, last_logged_step,
                            train_command)

TOTAL = 66  # 3 epochs x 22 steps


def _cmd(workdir):
  # Checkpoints only at the end: what the preempted run resumes from is its SIGTERM save.
  return train_command(workdir, "--config.num_epochs=3", "--config.log_every_steps=1",
                       "--config.checkpoint_every_steps=1000")


def _sigterm_when(cmd, log_path, ready):
  """Runs ``cmd``, sends SIGTERM once ``ready(output so far)``; returns (exit code, output)."""
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ready(log_path.read_text()):
      time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
  return code, log_path.read_text()


@pytest.mark.slow
def test_sigterm_checkpoints_exits_zero_and_the_same_command_resumes_bit_identically(tmp_path):
  straight = tmp_path / "straight"
  subprocess.run(_cmd(straight), cwd=REPO, check=True, capture_output=True, timeout=600)

  run = tmp_path / "preempted"
  code, out = _sigterm_when(_cmd(run), tmp_path / "out.txt", lambda out: last_logged_step(out) >= 30)
  assert code == 0, out[-2000:]
  match = re.search(r"kd_jax: preempted at step (\d+)/66: checkpoint saved in (\S+)/(\d+); "
                    r"run the same command to resume", out)
  assert match, out[-2000:]
  stopped = int(match.group(1))
  assert 30 <= stopped < TOTAL and stopped % 22 != 0  # Mid-epoch.
  assert checkpoint_steps(run) == [stopped] and not os.path.exists(run / "results.json")

  resumed = subprocess.run(_cmd(run), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert (f"resuming from the checkpoint at step {stopped} (epoch {stopped // 22 + 1}, "
          f"batch {stopped % 22})") in resumed.stdout
  assert_same_final_params(straight, run)


AB_CONFIG = """
from kd_jax import recipes

def get_config():
  c = recipes.digits_distill("ab", "resnet8-resnet8")
  c.num_epochs = 1
  c.runs.ab.objectives.ab.init_epochs = 2  # AB's stage: 44 steps before the main stage.
  return c
"""


@pytest.mark.slow
def test_sigterm_in_an_initialisation_stage_checkpoints_it_and_the_resumed_job_ends_identically(
    tmp_path):
  config = tmp_path / "ab.py"
  config.write_text(AB_CONFIG)
  straight = tmp_path / "straight"
  subprocess.run(train_command(straight, config=str(config)), cwd=REPO, check=True,
                 capture_output=True, timeout=600)

  run = tmp_path / "preempted"
  shutil.copytree(straight / "teacher", run / "teacher")  # The same finished teacher, reused.
  cmd = train_command(run, config=str(config))
  code, out = _sigterm_when(cmd, tmp_path / "out.txt", lambda out: "init_ab epoch 1/2" in out)
  assert code == 0, out[-2000:]
  match = re.search(r"kd_jax: \[ab\] preempted in the initialisation stage of 'ab' at stage "
                    r"step (\d+)/44: checkpoint saved in (\S+)/init_stages/ab/(\d+); run the "
                    r"same command to resume", out)
  assert match, out[-2000:]
  stopped = int(match.group(1))
  assert 22 < stopped < 44 and int(match.group(3)) == stopped  # In the stage's second epoch.
  assert checkpoint_steps(run / "ab", "init_stages/ab") == [stopped]
  assert checkpoint_steps(run / "ab") == []  # The main stage had not started.

  resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
  assert re.search(rf"initialisation stage of .ab. .*: 2 epochs, lr \S+, resuming at step {stopped}\n",
                   resumed.stdout), resumed.stdout[-2000:]
  assert_same_final_params(straight / "ab", run / "ab")
