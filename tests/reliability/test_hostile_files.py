"""A teacher file that would run code when unpickled is refused by the command, and the code
does not run."""
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Payload:
  """Unpickling calls os.system(<touch a marker file>)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_convert_refuses_a_file_that_would_run_code(tmp_path):
  marker = tmp_path / "code_ran"
  path = tmp_path / "resnet8_best.pth"
  torch.save({"model": {"conv1.weight": _Payload(marker)}}, path)
  proc = subprocess.run([sys.executable, "-m", "kd_jax.convert", "--arch=resnet8",
                         f"--torch={path}", f"--out={tmp_path / 'out'}"], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"kd_jax: error: refusing to load {path}: it is not a plain weights file")
  assert not marker.exists()  # The payload never ran.
  assert not os.path.exists(tmp_path / "out")
