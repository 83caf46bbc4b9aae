"""End to end through the command line: the default job prints its table and writes its files.
(Interrupted and resumed runs: tests/reliability/.)"""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from tests.commands import REPO, checkpoint_steps

# Test accuracy (%) each run of the default job clears after 2 epochs: 96.39, 95.56 and 95.56
# at this test's commit on a Zen 4; a floor some 6-8 points below (not one CPU's rounding).
FLOORS = {"teacher": 90.0, "kd_student": 88.0, "scratch_student": 88.0}


@pytest.mark.slow
def test_default_job_prints_table_and_writes_outputs(tmp_path):
  """On a fresh TFDS data_dir; the console holds kd_jax's lines only (no library logs, no
  progress-bar escape sequences), stderr nothing."""
  data_dir = tmp_path / "tfds"
  workdir = tmp_path / "w"
  proc = subprocess.run([sys.executable, "-m", "kd_jax.train", f"--workdir={workdir}",
                         "--config.num_epochs=2"], cwd=REPO, capture_output=True, text=True,
                        timeout=600, env={**os.environ, "TFDS_DATA_DIR": str(data_dir)})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stderr == ""
  out = proc.stdout
  lines = out.splitlines()
  assert lines[:4] == [  # The job is planned (the data prepared) before anything trains.
      f"kd_jax: preparing the embedded data set sklearn_digits in {data_dir} (once; later "
      f"runs read it from there)",
      f"kd_jax: results go to {workdir}",
      "budget: 3 runs that train, 3 x 2 epochs = 6 epochs (initialisation phases not "
      "counted); 0 already finished",
      f"[teacher] training resnet20 in {workdir}/teacher"]
  table = next(i for i, l in enumerate(lines) if l.startswith("run "))
  assert all(re.match(r"\[(teacher|kd_student|scratch_student)\] ", l) for l in lines[4:table])
  assert "\x1b" not in out and "\r" not in out
  for run in ("teacher", "kd_student", "scratch_student"):
    assert os.path.exists(workdir / run / "results.json")
    assert glob.glob(str(workdir / run / "events.out.tfevents.*"))
    assert checkpoint_steps(workdir / run) == [22, 44]
  summary = json.load(open(workdir / "results.json"))
  assert set(summary["runs"]) == {"teacher", "kd_student", "scratch_student"}
  assert summary["runs"]["kd_student"]["objectives"] == {"ce": 0.1, "kd": 0.9}
  # The printed table: one row per run, its model, weighted objectives and test accuracy
  # (of results.json, in percent) after 2 epochs of the 1,437 digits, above a floor.
  header, rule, *rows = lines[table:table + 5]
  assert re.split(r"\s{2,}", header.strip()) == ["run", "model", "objectives", "test acc %",
                                                  "time s"]
  assert set(rule) == {"-", " "}
  expected = {"teacher": ("resnet20", "1*ce"), "kd_student": ("resnet8", "0.1*ce + 0.9*kd"),
              "scratch_student": ("resnet8", "1*ce")}
  for row in rows:
    name, model, objectives, accuracy, seconds = re.split(r"\s{2,}", row.strip())
    assert (model, objectives) == expected.pop(name)
    assert accuracy == f"{100 * summary['runs'][name]['test_accuracy']:.2f}"
    assert float(accuracy) > FLOORS[name] and float(seconds) >= 0
  assert not expected
