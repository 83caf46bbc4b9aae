"""End to end through the command line: the default job prints its table and writes its files.
(Interrupted and resumed runs: tests/reliability/.)"""
import glob
import json
import os
import subprocess
import sys

import pytest

from tests.commands import REPO, checkpoint_steps


@pytest.mark.slow
def test_default_job_prints_table_and_writes_outputs(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "kd_jax.train", f"--workdir={tmp_path}",
                         "--config.num_epochs=2"], cwd=REPO, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = proc.stdout
  assert "run              model     objectives       test acc %" in out
  for run in ("teacher", "kd_student", "scratch_student"):
    assert os.path.exists(tmp_path / run / "results.json")
    assert glob.glob(str(tmp_path / run / "events.out.tfevents.*"))
    assert checkpoint_steps(tmp_path / run) == [22, 44]
  summary = json.load(open(tmp_path / "results.json"))
  assert set(summary["runs"]) == {"teacher", "kd_student", "scratch_student"}
  assert summary["runs"]["kd_student"]["objectives"] == {"ce": 0.1, "kd": 0.9}
  assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in summary["runs"].values())
