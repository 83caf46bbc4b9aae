"""Every entrypoint's error is exactly one line of stderr, also where TensorFlow writes its
start-up notices (oneDNN on AVX-512 CPUs; conftest forces TF_ENABLE_ONEDNN_OPTS=1 so that
every machine prints them)."""
import os
import subprocess
import sys

import pytest

from tests.commands import REPO


@pytest.mark.parametrize("module, args, message", [
    ("kd_jax.train", ["--config=configs/digits/supervised.py", "--workdir={tmp}",
                      "--config.data.name=no_such_data"],
     "kd_jax: error: config.data.name: unknown data set 'no_such_data': it is not a TFDS data "
     "set."),
    ("kd_jax.train", ["--config=configs/digits/supervised.py", "--workdir=gs://bucket/run"],
     "kd_jax: error: --workdir=gs://bucket/run: remote workdirs are not supported"),
    ("kd_jax.benchmark", ["--config=configs/digits/supervised.py", "--methods=nope"],
     "kd_jax: error: --methods: unknown nope; valid: all, kd,"),
    ("kd_jax.convert", ["--arch=resnet8", "--torch={tmp}/missing.pth", "--out={tmp}/out"],
     "kd_jax: error: no such PyTorch checkpoint: {tmp}/missing.pth"),
])
def test_an_entrypoints_error_is_one_line(module, args, message, tmp_path):
  proc = subprocess.run([sys.executable, "-m", module, *(a.format(tmp=tmp_path) for a in args)],
                        capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 1
  lines = proc.stderr.splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(message.format(tmp=tmp_path))


def test_a_data_set_that_cannot_be_downloaded_fails_in_one_line_before_anything_runs(tmp_path):
  """No network (here: an HTTPS proxy that does not resolve): one line at once, where TFDS's
  downloader retried for minutes; the workdir is not created."""
  env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds"),
         "HTTPS_PROXY": "http://proxy.invalid:3128"}
  proc = subprocess.run([sys.executable, "-m", "kd_jax.train", "--config=configs/cifar100/kd.py",
                         f"--workdir={tmp_path}/w"], capture_output=True, text=True, cwd=REPO,
                        env=env, timeout=120, check=False)
  assert proc.returncode == 1 and proc.stdout == ""
  lines = proc.stderr.splitlines()
  assert len(lines) == 1
  assert lines[0].startswith(f"kd_jax: error: data set 'cifar100' is not prepared in "
                             f"{tmp_path}/tfds and could not be downloaded (")
  assert not os.path.exists(tmp_path / "w")
