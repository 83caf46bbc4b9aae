"""Every entrypoint's error is exactly one line of stderr, also where TensorFlow writes its
start-up notices (oneDNN on AVX-512 CPUs; conftest forces TF_ENABLE_ONEDNN_OPTS=1 so that
every machine prints them)."""
import subprocess
import sys

import pytest

from tests.commands import REPO


@pytest.mark.parametrize("module, args, message", [
    ("kd_jax.train", ["--config=configs/digits/supervised.py", "--workdir={tmp}",
                      "--config.data.name=no_such_data"],
     "kd_jax: error: config.data.name: unknown data set 'no_such_data': it is not a TFDS data "
     "set."),
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
