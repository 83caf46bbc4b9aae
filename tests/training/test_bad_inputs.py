"""Bad input stops at start-up with one clear line; a diverging loss stops with the last good
checkpoint intact."""
import os
import sys

import jax
import numpy as np
import pytest

from kd_jax import checkpoint
from kd_jax.errors import KdJaxError
from kd_jax import job
from kd_jax.training.loop import TrainingDiverged

from tests import forkserver

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(*args, env=None):
  proc = forkserver.run([sys.executable, "-m", "kd_jax.train", *args], capture_output=True,
                        text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)
  return proc.returncode, proc.stderr.strip().splitlines()


def test_unknown_field_in_config_file(tiny_config, tmp_path):
  cfg = tiny_config()
  cfg.optimizer.learning_rate = 0.1
  with pytest.raises(KdJaxError, match=r"^unknown config field config\.optimizer\.learning_rate$"):
    job.run(cfg, str(tmp_path))


def test_unknown_field_override_on_the_command_line(tmp_path):
  rc, err = _cli("--config=configs/default.py", "--config.epochs=3", f"--workdir={tmp_path}")
  assert rc == 1 and len(err) == 1
  # Our words, then ml_collections' suggestion (its wording is the library's).
  assert err[0].startswith("kd_jax: error: unknown config field in --config.* override: "
                           "'epochs'; ")
  assert '"num_epochs"' in err[0]


def test_unknown_field_override_without_a_config_file(tmp_path):
  """The default config loads, and the override applies, when the flag is defined."""
  rc, err = _cli("--config.num_epoch=3", f"--workdir={tmp_path}")
  assert rc == 1 and len(err) == 1
  assert err[0].startswith("kd_jax: error: unknown config field in --config.* override: "
                           "'num_epoch'; ")
  assert '"num_epochs"' in err[0]


def test_a_field_one_run_lacks_says_where_it_goes(tmp_path):
  rc, err = _cli("--config.runs.kd_student.teacher_cache=memory", f"--workdir={tmp_path}")
  assert rc == 1 and err == [
      "kd_jax: error: unknown config field in --config.* override: 'teacher_cache'; "
      "config.runs.kd_student.teacher_cache is not in the config file's run, and a run holds "
      "only the fields its file sets: --config.teacher_cache=... sets it for every run "
      "(every run with teachers)"]


def test_an_objective_field_the_file_leaves_at_its_default_is_overridden(tmp_path):
  """configs/digits/distill.py:kd sets its objectives' weights only: kd's temperature (in
  the run kd) and ce's label smoothing (top level: the teacher run) are overridden all the
  same (out of range, refused by the plan before anything trains: they reached the
  methods), and a field kd lacks says which ones it has."""
  config = "--config=configs/digits/distill.py:kd"
  for override, refused in (
      ("--config.runs.kd.objectives.kd.temperature=-2",
       "[kd] config.objectives.kd: temperature must be > 0, got -2.0"),
      ("--config.objectives.ce.label_smoothing=2.0",
       "[teacher] config.objectives.ce: label_smoothing must be in [0, 1], got 2.0")):
    rc, err = _cli(config, override, f"--workdir={tmp_path}")
    assert rc == 1 and err == [f"kd_jax: error: {refused}"]
  rc, err = _cli(config, "--config.runs.kd.objectives.kd.tempreature=8", f"--workdir={tmp_path}")
  assert rc == 1 and err == [
      "kd_jax: error: unknown config field in --config.* override: 'tempreature'; objective "
      "'kd' (loss 'kd') has no field 'tempreature'; its hyperparameters: temperature, "
      "logit_stand"]


def test_a_run_objective_field_of_the_default_config_is_overridden_when_the_flag_is_defined(
    tmp_path):
  """Without --config the default file loads, and the overrides apply, at definition."""
  rc, err = _cli("--config.runs.kd_student.objectives.ce.label_smoothing=2.0",
                 f"--workdir={tmp_path}")
  assert rc == 1 and err == ["kd_jax: error: [kd_student] config.objectives.ce: label_smoothing "
                             "must be in [0, 1], got 2.0"]


def test_unknown_model(tiny_config, tmp_path):
  with pytest.raises(KdJaxError, match=r"^config\.model: unknown model 'resnet9'; valid names: "):
    job.run(tiny_config(model="resnet9"), str(tmp_path))


def test_unknown_teacher_model(tiny_config, tmp_path):
  cfg = tiny_config()
  cfg.teachers = {"t": dict(model="wrn_99", checkpoint="/nowhere")}
  with pytest.raises(KdJaxError, match=r"^config\.teachers\.t\.model: unknown model 'wrn_99'"):
    job.run(cfg, str(tmp_path))


def test_unknown_dataset(tiny_config, tmp_path):
  with pytest.raises(KdJaxError, match=r"^config\.data\.name: unknown data set 'digitz'"):
    job.run(tiny_config(**{"data.name": "digitz"}), str(tmp_path))


def test_batch_not_divisible_by_devices(tmp_path):
  rc, err = _cli("--config=configs/default.py", "--config.batch_size=12", f"--workdir={tmp_path}",
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert rc == 1 and len(err) == 1
  assert err[0] == ("kd_jax: error: [teacher] config.batch_size=12 is not divisible by the 8 "
                    "devices; use a multiple of 8, e.g. 8")


def test_dataset_not_prepared_and_the_download_fails(tiny_config, tmp_path, monkeypatch):
  """The host answers (the reachability probe passes, on any machine) but the download fails.
  (No network at all: tests/test_entrypoints.py.)"""
  import tensorflow_datasets as tfds
  from kd_jax.data import sources

  def offline(self, *a, **k):
    raise ConnectionError("Failed to establish a new connection")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
  monkeypatch.setattr(sources, "_unreachable", lambda url, timeout=5.0: None)
  cfg = tiny_config(**{"data.name": "cifar100", "data.data_dir": str(tmp_path / "tfds")})
  with pytest.raises(KdJaxError, match=r"^data set 'cifar100' is not prepared in .*tfds and could "
                     r"not be downloaded \(ConnectionError: .*\)\. Run `tfds build cifar100 "):
    job.run(cfg, str(tmp_path / "w"))


def test_bad_numbers(tiny_config, tmp_path):
  with pytest.raises(KdJaxError, match=r"^config\.num_epochs must be an integer >= 1, got 0$"):
    job.run(tiny_config(num_epochs=0), str(tmp_path))
  with pytest.raises(KdJaxError, match=r"^config\.optimizer\.lr must be a number > 0"):
    job.run(tiny_config(**{"optimizer.lr": -1.0}), str(tmp_path))


def test_objective_errors(tiny_config, tmp_path):
  cfg = tiny_config()
  cfg.objectives = {"kd": dict(weight=1.0)}
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.kd\.teacher: None is not a "
                     r"configured teacher"):
    job.run(cfg, str(tmp_path))
  cfg.objectives = {"ce": dict(weight=1.0, temprature=3)}
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.ce: unknown field\(s\) temprature"):
    job.run(cfg, str(tmp_path))


def test_workdir_with_checkpoint_of_another_model(tiny_config, tmp_path):
  job.run(tiny_config(num_epochs=1), str(tmp_path))
  with pytest.raises(KdJaxError, match=r"holds a checkpoint \(step 2\) with model='resnet8', but "
                     r"this config has model='resnet14'; use another --workdir"):
    job.run(tiny_config(model="resnet14"), str(tmp_path))


def test_nan_stops_training_and_keeps_last_good_checkpoint(tiny_config, tmp_path):
  """Epoch 1 (steps 1-2) at a sane lr writes a checkpoint; resumed at an infinite lr, step 3's
  update makes the parameters non-finite and step 4's loss is NaN: the run stops there, and
  the checkpoint of step 2 is the one kept, unchanged (inf arithmetic: no rounding involved)."""
  job.run(tiny_config(num_epochs=1), str(tmp_path))
  good, _ = checkpoint.load_model_variables(str(tmp_path))
  cfg = tiny_config(num_epochs=3, **{"optimizer.lr": float("inf")})
  with pytest.raises(TrainingDiverged, match=r"stopped at step 4: the loss became non-finite "
                     r"\(loss, loss_ce\); nothing from that "
                     r"step on was applied; the last good checkpoint \(step 2\) is kept in"):
    job.run(cfg, str(tmp_path))
  kept, meta = checkpoint.load_model_variables(str(tmp_path))
  assert meta["step"] == 2
  assert jax.tree.structure(kept) == jax.tree.structure(good)
  for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(kept)):
    np.testing.assert_array_equal(a, b)


def test_only_objective_and_teacher_fields_the_file_leaves_unset_are_added_at_their_defaults():
  """``cli.with_unset_fields``: a method's hyperparameter (a tuple too), weight, an
  initialisation phase's fields and a teacher's are added at their defaults (the override
  then sets them); a field the file sets, an unknown objective or field, and other paths
  are left alone."""
  import ml_collections
  from kd_jax import cli
  c = ml_collections.ConfigDict({
      "objectives": {"kd": {"weight": 0.5}, "ab": {}},
      "runs": {"s": {"objectives": {"cfl": {}},
                     "teachers": {"t": {"model": "resnet20", "run": "teacher"}}}},
      "num_epochs": 3})
  c.lock()
  cli.with_unset_fields(c, ["objectives.kd.temperature", "objectives.kd.weight",
                            "objectives.ab.init_epochs", "objectives.ab.main_phase",
                            "runs.s.objectives.cfl.sigmas", "objectives.kd.nope",
                            "objectives.nope.temperature", "num_epochs", "runs.s.seed",
                            "runs.s.teachers.t.checkpoint", "runs.s.teachers.t.run",
                            "runs.s.teachers.t.which", "runs.s.teachers.t.nope"])
  assert c.objectives.kd.to_dict() == {"weight": 0.5, "temperature": 4.0}
  assert c.objectives.ab.to_dict() == {"init_epochs": 30, "main_phase": False}
  assert c.runs.s.objectives.cfl.to_dict() == {"sigmas": (0.001, 0.01, 0.05, 0.1, 0.2, 1.0, 2.0)}
  assert c.runs.s.teachers.t.to_dict() == {"model": "resnet20", "run": "teacher",
                                           "checkpoint": "", "which": "latest"}
  assert "nope" not in c.objectives and c.num_epochs == 3 and "seed" not in c.runs.s


def test_a_teacher_the_job_trains_is_read_from_a_checkpoint_by_overrides(tmp_path):
  """``--config.runs.kd.teachers.teacher.run= ...checkpoint=<workdir>`` (a field the file
  leaves unset): the kd run reads that workdir (here one without a checkpoint: refused)."""
  rc, err = _cli("--config=configs/digits/distill.py:kd", "--config.runs.kd.teachers.teacher.run=",
                 f"--config.runs.kd.teachers.teacher.checkpoint={tmp_path}/t",
                 f"--workdir={tmp_path}/w")
  assert rc == 1 and err == [f"kd_jax: error: [kd] config.teachers.teacher.checkpoint: no kd_jax "
                             f"checkpoint in {tmp_path}/t (expected {tmp_path}/t/checkpoints); "
                             f"train it first or convert a PyTorch teacher into it"]
