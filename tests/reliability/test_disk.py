"""Unwritable and full workdirs for real: refused at start-up with where and how much, and a
disk that fills up during training stops the run with one line at the next save."""
import os
import subprocess
import time

import pytest

from tests.commands import REPO, train_command



def _train(workdir, *extra, wait=True):
  cmd = train_command(workdir, *extra)
  if not wait:
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture
def small_disk(tmp_path):
  """A 6 MB tmpfs (mounting needs root, as on CI; elsewhere the test is skipped)."""
  mount = tmp_path / "disk"
  mount.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mount)],
                    capture_output=True, timeout=60).returncode != 0:
    pytest.skip("cannot mount a tmpfs here (needs root)")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=False, timeout=60)


def test_a_workdir_that_cannot_be_created_is_refused_before_training(tmp_path):
  (tmp_path / "file").write_text("not a folder")
  proc = _train(tmp_path / "file" / "run")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f"kd_jax: error: workdir {tmp_path}/file/run is not writable (Not a directory): use "
      f"another --workdir or fix its permissions")


@pytest.mark.slow
def test_too_little_free_space_is_refused_at_start_up(small_disk):
  # resnet110 keeps 3 + 2 checkpoints of params + momentum (~14 MB): more than 6 MB.
  proc = _train(small_disk / "run", "--config.model=resnet110")
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"kd_jax: error: workdir {small_disk}/run has ")
  assert " MB free, but this run's checkpoints need about " in line
  assert line.endswith("MB: free space there, lower config.keep_checkpoints, or use another "
                       "--workdir")
  assert not os.path.exists(small_disk / "run" / "checkpoints")


@pytest.mark.slow
def test_a_disk_that_fills_up_stops_the_run_at_the_next_save(small_disk):
  run = small_disk / "run"
  proc = _train(run, "--config.num_epochs=20", "--config.checkpoint_every_steps=5", wait=False)
  deadline = time.time() + 300
  while time.time() < deadline and not os.path.exists(run / "checkpoints" / "5"):
    time.sleep(0.05)
  with open(small_disk / "filler", "wb", buffering=0) as f:  # Fill what is left.
    try:
      while True:
        f.write(b"\0" * 4096)
    except OSError:
      pass
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 1, out[-1000:]
  # (orbax's writer thread also logs the failed write with its traceback)
  line = next(l for l in err.splitlines() if l.startswith("kd_jax: error:"))
  assert line.startswith(f"kd_jax: error: cannot write a checkpoint in {run}/checkpoints (")
  assert line.endswith("MB free there): free space or use another --workdir; the run resumes "
                       "from its last complete checkpoint")
