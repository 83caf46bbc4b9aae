"""Downstream evaluation: linear probe and fine-tuning of a trained backbone on another
task, as a command (kd_jax.evaluate) and as a stage of a job."""
import glob
import json
import os
import sys

import pytest

from kd_jax import config as config_lib
from kd_jax import job, plan
from kd_jax.errors import KdJaxError
from kd_jax.evaluation import downstream

from tests import forkserver

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--config.downstream.num_epochs=1", "--config.downstream.probe_steps=30",
         "--config.downstream.data.num_train_examples=128",
         "--config.downstream.probe_l2=(0.0001,0.1)"]


def _evaluate(*args):
  proc = forkserver.run([sys.executable, "-m", "kd_jax.evaluate", *args], capture_output=True,
                        text=True, cwd=REPO, timeout=600)
  return proc.returncode, proc.stdout, proc.stderr.strip().splitlines()


def _small_downstream(cfg):
  cfg.downstream.data.name = "sklearn_digits_transposed"
  cfg.downstream.num_epochs = 1
  cfg.downstream.probe_steps = 30
  cfg.downstream.probe_l2 = (1e-4, 1e-1)
  cfg.downstream.data.num_train_examples = 128
  return cfg


@pytest.mark.slow
def test_evaluate_runs_both_protocols_on_a_trained_run(tiny_config, tmp_path):
  job.run(tiny_config(), str(tmp_path))
  rc, out, err = _evaluate(f"--workdir={tmp_path}",
                           "--config=configs/downstream/digits_transposed.py", *SMALL)
  assert rc == 0, err[-5:]
  task = tmp_path / "downstream" / "sklearn_digits_transposed"
  results = json.loads((task / "results.json").read_text())
  assert results["model"] == "resnet8" and results["data"] == "sklearn_digits_transposed"
  assert 0.0 <= results["linear_probe"]["top1"] <= 1.0
  assert results["linear_probe"]["l2"] in (1e-4, 1e-1)
  assert 0.0 <= results["finetune"]["top1"] <= 1.0 and results["finetune"]["epochs"] == 1
  assert "initialised from" in out and "linear probe on 128 train features [64-d]" in out
  assert glob.glob(str(task / "events.out.tfevents.*"))  # TensorBoard.
  assert (task / "finetune" / "results.json").exists()


@pytest.mark.slow
def test_evaluate_a_random_backbone_trains_nothing_before(tmp_path):
  rc, out, err = _evaluate(f"--workdir={tmp_path}",
                           "--config=configs/downstream/digits_transposed.py",
                           "--config.downstream.backbone=random", "--config.model=resnet8",
                           "--config.downstream.protocols=('linear_probe',)", *SMALL)
  assert rc == 0, err[-5:]
  results = json.loads((tmp_path / "downstream" / "sklearn_digits_transposed" /
                        "results.json").read_text())
  assert results["backbone"] == "a random resnet8" and "finetune" not in results
  # Nothing was trained first: no run was written beside the downstream results (no
  # checkpoint, no train events), and no training was reported.
  assert os.listdir(tmp_path) == ["downstream"]
  assert not glob.glob(str(tmp_path / "**" / "checkpoints"), recursive=True)
  assert "training" not in out and "initialised from" not in out


def test_evaluate_without_a_downstream_data_set_fails_in_one_line(tmp_path):
  rc, _, err = _evaluate(f"--workdir={tmp_path}", "--config=configs/default.py")
  assert rc == 1 and len(err) == 1
  assert err[0] == ("kd_jax: error: config.downstream.data.name is empty: the config names no "
                    "downstream data set")


def test_evaluate_a_workdir_without_a_run_fails_in_one_line(tmp_path):
  rc, _, err = _evaluate(f"--workdir={tmp_path}",
                         "--config=configs/downstream/digits_transposed.py")
  assert rc == 1 and len(err) == 1
  assert err[0].startswith(f"kd_jax: error: --workdir: no kd_jax checkpoint in {tmp_path}")


@pytest.mark.slow
def test_a_job_evaluates_its_runs_downstream_and_other_runs_models(tiny_config, tmp_path):
  cfg = _small_downstream(tiny_config())
  cfg.runs = {"teacher": dict(downstream=dict(data=dict(name=""))),
              "teacher_eval_seed0": dict(downstream=dict(backbone="teacher",
                                                         protocols=("linear_probe",))),
              "student_seed0": dict(teachers={"teacher": dict(model="resnet8", run="teacher")},
                                    objectives={"kd": {}}, downstream=dict(
                                        protocols=("linear_probe",)))}
  summary = job.run(cfg, str(tmp_path))
  runs = summary["runs"]
  assert "downstream" not in runs["teacher"]
  assert runs["teacher_eval_seed0"]["steps"] == 0  # Nothing trained: the teacher evaluated.
  assert "linear_probe" in runs["teacher_eval_seed0"]["downstream"]["sklearn_digits_transposed"]
  assert runs["student_seed0"]["steps"] == 4
  saved = json.loads((tmp_path / "student_seed0" / "results.json").read_text())
  assert saved["downstream"] == runs["student_seed0"]["downstream"]
  groups = summary["seed_groups"]
  assert json.loads((tmp_path / "results.json").read_text())["seed_groups"] == groups
  assert set(groups["teacher_eval"]) >= {"runs", "linear_probe"}
  assert "mean" in groups["student"] and "linear_probe" in groups["student"]


@pytest.mark.slow
def test_a_finished_runs_downstream_phase_is_done_again_only_for_another_config(
    tiny_config, tmp_path, monkeypatch, capsys):
  cfg = _small_downstream(tiny_config())
  cfg.runs = {"student": {}}
  job.run(cfg, str(tmp_path / "job"))
  workdir = tmp_path / "moved"
  os.rename(tmp_path / "job", workdir)  # A job moved elsewhere goes on where it was.
  evaluate = downstream.evaluate

  def fail(*args, **kwargs):
    raise AssertionError("evaluated or fine-tuned downstream again for the same config")
  monkeypatch.setattr(downstream, "evaluate", fail)
  job.run(cfg, str(workdir))  # The same config: its results are kept.
  # kd_jax.evaluate of the run's workdir plans the same fine-tuning run (not refused).
  plan.make_downstream(config_lib.expand_runs(cfg)["student"], str(workdir / "student"))
  monkeypatch.setattr(downstream, "evaluate", evaluate)
  monkeypatch.setattr(downstream, "train_and_evaluate", fail)

  capsys.readouterr()
  cfg.downstream.probe_l2 = (0.5,)
  runs = job.run(cfg, str(workdir))["runs"]  # The probe again, the fine-tuning kept.
  task = runs["student"]["downstream"]["sklearn_digits_transposed"]
  assert task["linear_probe"]["l2"] == 0.5 and "finetune" in task
  assert ("[student] evaluating downstream again: its results were of another config "
          "(downstream.probe_l2: [0.0001, 0.1] -> [0.5])") in capsys.readouterr().out
  saved = json.loads((workdir / "student" / "results.json").read_text())
  assert saved["downstream"] == runs["student"]["downstream"]

  cfg.downstream.optimizer.lr = 0.5  # A finished fine-tuning run of another config.
  with pytest.raises(KdJaxError, match=(
      r"^\[student\] config.downstream \(its fine-tuning run\): workdir .*finetune holds a "
      r"finished run trained with another config \(optimizer.lr: 0.01 -> 0.5\): remove that "
      r"folder to fine-tune with this config$")):
    job.run(cfg, str(workdir))

  cfg.downstream.data.name = "sklearn_digits"
  cfg.downstream.protocols = ("linear_probe",)
  runs = job.run(cfg, str(workdir))["runs"]
  assert list(runs["student"]["downstream"]) == ["sklearn_digits"]
  assert ("[student] evaluating downstream again: its results were of another config "
          "(downstream data set: 'sklearn_digits_transposed' -> 'sklearn_digits')"
          ) in capsys.readouterr().out
