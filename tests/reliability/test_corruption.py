"""Damaged checkpoints for real: the newest step's array file truncated, or its state item
deleted, is detected at restore; the trainer says so, moves it aside and resumes from the
step before; with no intact step it stops with one line and trains nothing."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from kd_jax import job
from tests import forkserver
from tests.commands import REPO, assert_same_final_params, train_command
from tests.builders import make_tiny_config



def _cmd(workdir):
  # 2 epochs of 22 steps, a checkpoint every 11: steps 11, 22, 33, 44 (the last 3 kept).
  return train_command(workdir, "--config.num_epochs=2", "--config.checkpoint_every_steps=11")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("finished")
  subprocess.run(_cmd(workdir), cwd=REPO, check=True, capture_output=True, timeout=600)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["22", "33", "44"]
  return workdir


def _copy(finished, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(finished, workdir)
  os.remove(workdir / "results.json")
  return workdir


def _truncate_arrays(step_dir):
  files = [f for f in glob.glob(f"{step_dir}/state/d/*") if os.path.getsize(f) > 100]
  assert files
  for f in files:
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)


def _resume(workdir):
  return forkserver.run(_cmd(workdir), cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_latest_step_is_set_aside_and_the_one_before_resumes(finished, tmp_path, damage):
  workdir = _copy(finished, tmp_path)
  if damage == "truncated":
    _truncate_arrays(workdir / "checkpoints" / "44")
  else:
    shutil.rmtree(workdir / "checkpoints" / "44" / "state")
  proc = _resume(workdir)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (f"checkpoint {workdir}/checkpoints/44 is damaged and cannot be read: moved to "
          f"{workdir}/checkpoints_damaged/; resuming from the one before it") in proc.stdout
  assert "resuming from the checkpoint at step 33 (epoch 2, batch 11)" in proc.stdout
  assert os.listdir(workdir / "checkpoints_damaged") == ["44"]
  assert sorted(os.listdir(workdir / "checkpoints")) == ["22", "33", "44"]  # 44 written anew
  assert json.load(open(workdir / "results.json"))["steps"] == 44


@pytest.mark.slow
def test_no_intact_step_stops_with_one_line_and_moves_nothing(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  for step in ("22", "33", "44"):
    _truncate_arrays(workdir / "checkpoints" / step)
  os.remove(workdir / "checkpoints" / "33" / "meta" / "metadata")
  proc = _resume(workdir)
  assert proc.returncode == 1
  err = proc.stderr.strip().splitlines()[-1]
  assert err.startswith(f"kd_jax: error: no intact checkpoint in {workdir}/checkpoints: "
                        f"step(s) 44, 33, 22 cannot be read (step 44: ")
  assert err.endswith(f"); delete {workdir}/checkpoints to train from the start")
  assert sorted(os.listdir(workdir / "checkpoints")) == ["22", "33", "44"]
  assert not os.path.exists(workdir / "results.json")


@pytest.mark.slow
def test_a_damaged_initialisation_stage_checkpoint_is_set_aside_and_the_stage_resumes_from_the_one_before(
    tmp_path, capsys):
  cfg = make_tiny_config(num_epochs=1, keep_checkpoints=5)
  cfg.runs = {
      "teacher": dict(model="resnet8"),
      "ab": dict(model="resnet8", teachers={"t": dict(model="resnet8", run="teacher")},
                 objectives={"ce": dict(weight=1.0), "ab": dict(weight=1.0, init_epochs=2)}),
  }
  job.run(cfg, str(tmp_path / "straight"))
  straight = tmp_path / "straight" / "ab"
  # One checkpoint folder for the run: AB's stage at its steps 2 and 4, the main stage's
  # end at 4 + 2.
  assert sorted(int(s) for s in os.listdir(straight / "checkpoints")) == [2, 4, 6]
  shutil.copytree(tmp_path / "straight", tmp_path / "damaged")
  run = tmp_path / "damaged" / "ab"
  shutil.rmtree(run / "checkpoints" / "6")  # Back to the stage's end, whose arrays are cut.
  os.remove(run / "results.json")
  _truncate_arrays(run / "checkpoints" / "4")
  capsys.readouterr()
  job.run(cfg, str(tmp_path / "damaged"))
  out = capsys.readouterr().out
  assert (f"[ab] checkpoint {run}/checkpoints/4 is damaged and cannot be read: moved to "
          f"{run}/checkpoints_damaged/; resuming from the one before it") in out
  assert re.search(r"\[ab\] initialisation phase of 'ab' \(activation_boundaries\): 2 epochs, "
                   r"lr \S+, resuming at step 2\n", out), out
  assert os.listdir(run / "checkpoints_damaged") == ["4"]
  assert sorted(int(s) for s in os.listdir(run / "checkpoints")) == [2, 4, 6]  # Written anew.
  assert_same_final_params(straight, run)


_LEAVE_FAILED_READ_LEFTOVERS = """
import asyncio, gc, sys
from kd_jax import checkpoint

async def failed_read():
  raise ValueError("OUT_OF_RANGE: Error reading")

async def never_awaited():
  pass

def leave_leftovers():
  loop = asyncio.new_event_loop()
  task = loop.create_task(failed_read())
  loop.run_until_complete(asyncio.sleep(0))
  loop.close()
  return task, never_awaited()

if sys.argv[1] == "quiet":
  with checkpoint.quiet_failed_reads():
    leftovers = leave_leftovers()
else:
  leftovers = leave_leftovers()
# Orbax's leftovers sit in reference cycles: they surface after the reads, often at exit.
del leftovers
gc.collect()
print("kd_jax: error: the one line")
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_leftovers_of_failed_reads_print_nothing_after_the_error_line(quiet):
  # A failed orbax read leaves a task whose exception nobody retrieves and a coroutine never
  # awaited; collected after the one-line error, they printed tracebacks below it.
  proc = subprocess.run(
      [sys.executable, "-c", _LEAVE_FAILED_READ_LEFTOVERS, "quiet" if quiet else "loud"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout == "kd_jax: error: the one line\n"
  if quiet:
    assert proc.stderr == ""
  else:  # What the test would see without quiet_failed_reads.
    assert "Task exception was never retrieved" in proc.stderr
    assert "coroutine 'never_awaited' was never awaited" in proc.stderr
