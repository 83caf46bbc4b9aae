"""Unwritable and full workdirs for real: refused at start-up with where and how much, and a
disk that fills up during training stops the run with one line at the next save."""
import os
import subprocess
import time

import pytest

from tests import forkserver
from tests.commands import REPO, train_command


def _train(workdir, *extra):
  return forkserver.run(train_command(workdir, *extra), cwd=REPO, capture_output=True,
                        text=True, timeout=600)


@pytest.fixture
def small_disk(tmp_path):
  """A 6 MB tmpfs. Mounting needs root (CI runs as root): skipped, with that reason, for
  other users; a failed mount as root is a failure, not a skip."""
  if os.geteuid() != 0:
    pytest.skip(f"mounting a 6 MB tmpfs needs root (running as uid {os.geteuid()})")
  mount = tmp_path / "disk"
  mount.mkdir()
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mount)],
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, f"mount -t tmpfs failed as root: {proc.stderr.strip()}"
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
  # resnet8 keeping 20 + 2 checkpoints of params + momentum (~15 MB): more than 6 MB.
  proc = _train(small_disk / "run", "--config.keep_checkpoints=20")
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"kd_jax: error: workdir {small_disk}/run has ")
  assert " MB free, but this run's checkpoints need about " in line
  assert line.endswith("MB: free space there, lower config.keep_checkpoints, or use another "
                       "--workdir")
  assert not os.path.exists(small_disk / "run" / "checkpoints")


@pytest.mark.slow
def test_a_disk_that_fills_up_stops_the_run_at_the_next_save(small_disk, tmp_path):
  run = small_disk / "run"
  # The child's output goes to files (off the small disk): a pipe nobody reads would block it.
  out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
  with open(out_path, "w") as out, open(err_path, "w") as err:
    proc = forkserver.start(train_command(run, "--config.num_epochs=20",
                                          "--config.checkpoint_every_steps=5"),
                            cwd=REPO, stdout=out, stderr=err, text=True)
  try:
    deadline = time.time() + 300
    while (time.time() < deadline and proc.poll() is None
           and not os.path.exists(run / "checkpoints" / "5")):
      time.sleep(0.05)
    assert os.path.exists(run / "checkpoints" / "5"), err_path.read_text()[-2000:]
    with open(small_disk / "filler", "wb", buffering=0) as f:  # Fill what is left.
      try:
        while True:
          f.write(b"\0" * 4096)
      except OSError:
        pass
    proc.wait(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=60)
  assert proc.returncode == 1, out_path.read_text()[-1000:]
  # (orbax's writer thread also logs the failed write with its traceback)
  line = next(l for l in err_path.read_text().splitlines() if l.startswith("kd_jax: error:"))
  assert line.startswith(f"kd_jax: error: cannot write a checkpoint in {run}/checkpoints (")
  assert line.endswith("MB free there): free space or use another --workdir; the run resumes "
                       "from its last complete checkpoint")
