"""Checkpoints kd_jax must not continue from are refused at start-up in one line, and nothing
is trained or written: a workdir written by another kd_jax version (checkpoint format), a
workdir of another model, and a teacher checkpoint written by a newer kd_jax."""
import json
import shutil

import pytest

from tests import forkserver
from tests.commands import REPO, checkpoint_steps, train_command


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 1-epoch run of the digits config (a checkpoint at step 22)."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  forkserver.run(train_command(workdir, "--config.num_epochs=1"), cwd=REPO, check=True,
                 capture_output=True, timeout=600)
  return workdir


def _copy_with_meta(trained, target, **changes):
  """A copy of the run whose step-22 checkpoint metadata has ``changes``."""
  shutil.copytree(trained, target)
  path = target / "checkpoints" / "22" / "meta" / "metadata"
  meta = json.loads(path.read_text())
  meta.update(changes)
  path.write_text(json.dumps(meta))
  return target


def _error_line(cmd):
  proc = forkserver.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
  return proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_checkpoint_of_another_kd_jax_version_is_not_resumed(trained, tmp_path):
  run = _copy_with_meta(trained, tmp_path / "run", checkpoint_version=1)
  line = _error_line(train_command(run, "--config.num_epochs=2"))
  assert line == (
      f"kd_jax: error: workdir {run} holds a checkpoint (step 22) written by another kd_jax "
      f"version (checkpoint format 1; this kd_jax resumes formats 2, 3): finish that run with "
      f"the kd_jax that started it, or use another --workdir, or delete {run}/checkpoints to "
      f"start over")
  assert checkpoint_steps(run) == [22]


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_not_resumed(trained, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  line = _error_line(train_command(run, "--config.num_epochs=2", "--config.model=resnet20"))
  assert line == (
      f"kd_jax: error: workdir {run} holds a checkpoint (step 22) with model='resnet8', but "
      f"this config has model='resnet20'; use another --workdir, or delete {run}/checkpoints "
      f"to start over")
  assert checkpoint_steps(run) == [22]


TEACHER_CONFIG = """
from kd_jax import recipes

def get_config():
  c = recipes.digits_base("resnet8")
  c.teachers = {{"teacher": dict(model="resnet8", checkpoint="{teacher}")}}
  c.objectives = {{"ce": dict(weight=0.1), "kd": dict(weight=0.9)}}
  return c
"""


@pytest.mark.slow
def test_a_teacher_checkpoint_from_a_newer_kd_jax_is_refused(trained, tmp_path):
  teacher = _copy_with_meta(trained, tmp_path / "teacher", checkpoint_version=4)
  config = tmp_path / "kd.py"
  config.write_text(TEACHER_CONFIG.format(teacher=teacher))
  student = tmp_path / "student"
  line = _error_line(train_command(student, config=str(config)))
  assert line == (f"kd_jax: error: config.teachers.teacher.checkpoint: {teacher}/checkpoints/22 "
                  f"was written by a newer kd_jax "
                  f"(checkpoint format 4; this kd_jax reads formats up to 3): upgrade kd_jax to "
                  f"read it")
  assert checkpoint_steps(student) == []
