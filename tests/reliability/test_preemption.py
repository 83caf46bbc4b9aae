"""Preemption for real: a training process gets SIGTERM mid-epoch (of the main stage, or of an
initialisation stage; sent from inside the run after a chosen step, ``KD_JAX_FAULT``), writes
a checkpoint at that step, exits 0; the same command resumes and ends bit-identical to a run
never interrupted (CPU)."""
import os
import re
import shutil
import subprocess

import pytest

from kd_jax import checkpoint
from tests import forkserver
from tests.commands import REPO, assert_same_final_params, checkpoint_steps, train_command



def _cmd(workdir):
  # Checkpoints only at the end: what the preempted run resumes from is its SIGTERM save.
  return train_command(workdir, "--config.num_epochs=3", "--config.log_every_steps=1",
                       "--config.checkpoint_every_steps=1000")


def _preempted(cmd, log_path, fault):
  """Runs ``cmd`` with ``KD_JAX_FAULT=fault`` (a SIGTERM from inside the run at a chosen
  step); returns (exit code, output)."""
  with open(log_path, "w") as log:
    proc = forkserver.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=600,
                          env={**os.environ, "KD_JAX_FAULT": fault}, check=False)
  return proc.returncode, log_path.read_text()


@pytest.mark.slow
def test_sigterm_checkpoints_exits_zero_and_the_same_command_resumes_bit_identically(tmp_path):
  straight = tmp_path / "straight"  # A fresh interpreter: what the forked runs must match.
  subprocess.run(_cmd(straight), cwd=REPO, check=True, capture_output=True, timeout=600)

  run = tmp_path / "preempted"
  code, out = _preempted(_cmd(run), tmp_path / "out.txt", "SIGTERM@step:31")  # Mid-epoch 2.
  assert code == 0, out[-2000:]
  assert f"kd_jax: preempted at step 31/66: checkpoint saved in {run}/checkpoints/31; run the " \
         f"same command to resume" in out, out[-2000:]
  assert checkpoint_steps(run) == [31] and not os.path.exists(run / "results.json")

  resumed = forkserver.run(_cmd(run), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resuming from the checkpoint at step 31 (epoch 2, batch 9)" in resumed.stdout
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
  straight = tmp_path / "straight"  # A fresh interpreter: what the forked runs must match.
  subprocess.run(train_command(straight, config=str(config)), cwd=REPO, check=True,
                 capture_output=True, timeout=600)

  run = tmp_path / "preempted"
  shutil.copytree(straight / "teacher", run / "teacher")  # The same finished teacher, reused.
  cmd = train_command(run, config=str(config))
  code, out = _preempted(cmd, tmp_path / "out.txt", "SIGTERM@phase:30")  # In its 2nd epoch.
  assert code == 0, out[-2000:]
  assert (f"kd_jax: [ab] preempted in the initialisation phase of 'ab' at phase step 30/44: "
          f"checkpoint saved in {run}/ab/checkpoints/30; run the same command to resume"
          in out), out[-2000:]
  stopped = 30
  # The run's one checkpoint folder numbers the steps of every stage: the stage's first
  # epoch's end (22) and where it stopped, in its second.
  assert checkpoint_steps(run / "ab") == [22, stopped]
  _, meta = checkpoint.load_model_variables(str(run / "ab"))
  assert (meta["phase"], meta["step"]) == ("init_ab", stopped)

  resumed = forkserver.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
  assert re.search(rf"initialisation phase of .ab. .*: 2 epochs, lr \S+, resuming at step {stopped}\n",
                   resumed.stdout), resumed.stdout[-2000:]
  assert_same_final_params(straight / "ab", run / "ab")


def test_a_malformed_fault_is_refused_in_one_line(monkeypatch):
  from kd_jax.errors import KdJaxError
  from kd_jax.training import faults
  monkeypatch.setenv("KD_JAX_FAULT", "SIGTERM@epoch:3")
  with pytest.raises(KdJaxError, match=r"^KD_JAX_FAULT='SIGTERM@epoch:3': expected "
                     r"<SIGNAL>@<point>:<step>, point one of step, save, phase \(e\.g\. "
                     r"SIGTERM@step:31\)$"):
    faults.at("step", 3)
