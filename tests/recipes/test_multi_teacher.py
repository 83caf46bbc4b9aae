"""configs/consolidation and configs/amalgamation: the recipes as data, the paper-scale ones
run on mock data with random-weight teachers of three architectures."""
import json
import math

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from kd_jax import checkpoint as ckpt_lib
from kd_jax import config as config_lib
from kd_jax import models
from kd_jax import job
from kd_jax.data import pipelines
from kd_jax.distill import student as student_lib
from tests import probes
from tests.recipes.helpers import load_config


def _validate_runs(c):
  runs = config_lib.expand_runs(c)
  names = list(runs)
  for i, run in enumerate(runs.values()):
    config_lib.validate(run, run_names=names[:i])
  return runs


def test_digits_consolidation_has_three_teachers_of_three_architectures_and_baselines():
  runs = _validate_runs(load_config("configs/consolidation/digits.py"))
  assert {n: runs[n].model for n in ("generalist", "expert_low", "expert_high")} == {
      "generalist": "resnet20", "expert_low": "wrn_16_2", "expert_high": "vgg8"}
  assert tuple(runs["expert_high"].data.classes) == (5, 6, 7, 8, 9)
  student = runs["consolidated_seed2"]
  assert tuple(student.student_heads) == ("generalist", "expert_low", "expert_high")
  assert student.data.unlabeled and student.eval_head == "generalist"
  assert {k: (v["teacher"], v["temperature"]) for k, v in student.objectives.items()} == {
      f"kd_{t}": (t, 1.0) for t in ("generalist", "expert_low", "expert_high")}
  assert student.downstream.data.name == "sklearn_digits_transposed"
  assert runs["scratch_seed0"].downstream.backbone == "random"
  assert runs["expert_low_seed1"].downstream.backbone == "expert_low"
  assert not runs["generalist"].downstream.data.name  # Teachers are judged by their own runs.
  assert len([n for n in runs if n.endswith("_seed0")]) == 6


def test_digits_consolidation_with_target_adds_ce_on_the_labelled_target_beside_kd_on_all():
  runs = _validate_runs(load_config("configs/consolidation/digits_target.py"))
  target = runs["consolidated_target_seed1"]
  assert target.data.name == "sklearn_digits+sklearn_digits_transposed"
  assert tuple(target.data.unlabeled_parts) == ("sklearn_digits",) and not target.data.unlabeled
  assert tuple(target.student_heads) == ("generalist", "expert_low", "expert_high")
  assert target.objectives.ce.weight == 1.0 and target.eval_head == ""
  assert sorted(target.objectives) == ["ce", "kd_expert_high", "kd_expert_low", "kd_generalist"]
  plain = runs["consolidated_seed1"]  # The unlabelled-only consolidation beside it.
  assert plain.data.unlabeled and "ce" not in plain.objectives
  assert runs["target_ce_seed0"].data.name == "sklearn_digits_transposed"
  assert tuple(target.downstream.protocols) == ("linear_probe",)
  assert target.downstream.data.name == "sklearn_digits_transposed"


@pytest.mark.slow
def test_a_consolidated_student_trains_on_an_unlabelled_proxy_and_a_labelled_target(tmp_path):
  """Two steps of the recipe's run with one random teacher: CE reads the target's labels
  only (the proxy's are masked: what the step's objectives read is recorded), KD every
  image; the student's classifier is evaluated on the target's test split (recomputed here
  from the saved student)."""
  gen = str(tmp_path / "generalist")
  ckpt_lib.save_model_variables(gen, dict(models.init(models.create("resnet8", 10),
                                                      jax.random.PRNGKey(0), (8, 8, 1))),
                                {"model": "resnet8", "num_classes": 10})
  c = load_config("configs/consolidation/digits_target.py", "1")
  run = c.runs.consolidated_target_seed0.to_dict()
  run.update(teachers={"generalist": dict(model="resnet8", checkpoint=gen)},
             student_heads=("generalist",), num_epochs=1, batch_size=32,
             objectives={"ce": dict(weight=1.0), "kd_generalist": run["objectives"]["kd_generalist"],
                         "batch_probe": dict(weight=1.0, keys=("index", "label_mask"))})
  run["data"].update(num_train_examples=32, num_eval_examples=40)
  run["downstream"] = dict(data=dict(name=""))
  c.runs = {"consolidated_target": run}
  with probes.registered():
    summary = job.run(c, str(tmp_path / "job"))
    seen = probes.recorded()
  r = summary["runs"]["consolidated_target"]
  assert r["steps"] == 2 and sorted(r["objectives"]) == ["batch_probe", "ce", "kd_generalist"]
  # The proxy (sklearn_digits, indices 0..1436) is masked, the target (from 1437) is not.
  index = np.concatenate([b["index"] for b in seen])
  mask = np.concatenate([b["label_mask"] for b in seen])
  assert 0 < (index >= 1437).sum() < len(index)
  np.testing.assert_array_equal(mask, (index >= 1437).astype(np.float32))
  # test_accuracy: the classifier (not the head) on the 40 transposed test digits.
  cfg = config_lib.expand_runs(c)["consolidated_target"]
  data = pipelines.create_dataset(cfg.data, 32, 40)
  variables, _ = ckpt_lib.load_model_variables(str(tmp_path / "job" / "consolidated_target"))
  student = student_lib.create("resnet8", 10, {"generalist": 10})
  correct = total = 0
  for b in data.eval_batches():
    logits, _ = student.apply(variables, b["image"], train=False)
    correct += ((np.argmax(logits, -1) == b["label"]) * b["mask"]).sum()
    total += b["mask"].sum()
  assert total == 40
  assert r["test_accuracy"] == pytest.approx(correct / 40, abs=1e-6)


def test_digits_amalgamation_is_cfl_plus_soft_targets_over_the_union():
  runs = _validate_runs(load_config("configs/amalgamation/digits.py"))
  cfl = runs["cfl_seed0"]
  assert cfl.objectives.soft_ce.teacher == ["expert_low", "expert_high"]
  assert (cfl.objectives.cfl.weight, cfl.objectives.cfl.hidden) == (10.0, 32)
  assert cfl.eval_tasks.to_dict() == {"expert_low": (0, 1, 2, 3, 4),
                                      "expert_high": (5, 6, 7, 8, 9)}
  assert "cfl" not in runs["kd_seed0"].objectives


def test_cub_dogs_has_the_official_codes_recipe():
  runs = _validate_runs(load_config("configs/amalgamation/cub_dogs.py"))
  cfl = runs["cfl"]
  assert cfl.model == "resnet34" and cfl.data.name == "caltech_birds2011+stanford_dogs"
  assert cfl.data.unlabeled and cfl.data.image_size == 224
  assert (cfl.optimizer.name, cfl.optimizer.lr, cfl.optimizer.weight_decay) == ("adam", 1e-4, 1e-4)
  assert tuple(cfl.optimizer.decay_epochs) == (15,) and cfl.num_epochs == 30
  assert dict(cfl.optimizer.lr_scale) == {"student/fc": 10.0, "adapters/cfl": 5.0}
  assert cfl.objectives.cfl.weight == 10.0 and cfl.objectives.soft_ce.temperature == 1.0
  assert (runs["teacher_birds"].model, runs["teacher_dogs"].model) == ("resnet18", "resnet34")
  assert not runs["teacher_birds"].optimizer.lr_scale  # The student's groups only.
  assert len(cfl.eval_tasks.dogs) == 120 and cfl.eval_tasks.dogs[0] == 200


def test_imagenet_consolidation_validates_for_any_experts_and_proxy():
  runs = _validate_runs(load_config("configs/consolidation/imagenet_experts.py",
                                    "caltech_birds2011,stanford_dogs;imagenet2012;cars196"))
  student = runs["consolidated"]
  assert tuple(student.student_heads) == ("generalist", "expert_caltech_birds2011",
                                          "expert_stanford_dogs")
  assert student.downstream.data.name == "cars196"
  assert runs["generalist"].downstream.backbone == "workdirs/imagenet/resnet50"


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation)."""


def _checkpoint(tmp_path_factory, model, classes):
  module = models.create(model, classes)
  variables = models.init(module, jax.random.PRNGKey(classes), (32, 32, 3))
  path = str(tmp_path_factory.mktemp(f"{model}_{classes}"))
  ckpt_lib.save_model_variables(path, dict(variables), {"model": model, "num_classes": classes})
  return path


def _small(c):
  c.data.image_size = 32
  c.data.num_train_examples = 16
  c.data.num_eval_examples = 16
  c.batch_size = 8
  c.num_epochs = 1
  c.log_every_steps = 1
  return c


@pytest.mark.slow
def test_three_teachers_of_three_architectures_consolidate_on_mock_imagenet(tmp_path_factory):
  """The paper-scale consolidation recipe with a resnet18 generalist, a MobileNetV2 bird
  expert and a vgg8 dog expert (random weights) on mock ImageNet, then the downstream
  stage on mock oxford_iiit_pet: the student starts from the generalist's backbone with one
  new head per teacher, is scored on its generalist head, and the downstream fine-tuning
  starts from its backbone."""
  c = _small(load_config("configs/consolidation/imagenet_experts.py",
                         "caltech_birds2011,stanford_dogs"))
  gen = _checkpoint(tmp_path_factory, "resnet18", 1000)
  teachers = {"generalist": dict(model="resnet18", checkpoint=gen),
              "expert_caltech_birds2011": dict(
                  model="MobileNetV2", checkpoint=_checkpoint(tmp_path_factory, "MobileNetV2", 200)),
              "expert_stanford_dogs": dict(
                  model="vgg8", checkpoint=_checkpoint(tmp_path_factory, "vgg8", 120))}
  run = c.runs.consolidated.to_dict()
  run.update(model="resnet18", init_from=gen, teachers=teachers)
  c.runs = {"consolidated": run}
  ds = c.downstream
  ds.data.image_size, ds.data.num_train_examples, ds.data.num_eval_examples = 32, 16, 16
  ds.num_epochs, ds.batch_size, ds.probe_steps = 1, 8, 10
  workdir = tmp_path_factory.mktemp("consolidation")
  with tfds.testing.mock_data(num_examples=16):
    summary = job.run(c, str(workdir))
  r = summary["runs"]["consolidated"]
  assert r["steps"] == 2 and sorted(r["objectives"]) == [
      "kd_expert_caltech_birds2011", "kd_expert_stanford_dogs", "kd_generalist"]
  variables, meta = ckpt_lib.load_model_variables(str(workdir / "consolidated"))
  assert meta["heads"] == {"generalist": 1000, "expert_caltech_birds2011": 200,
                           "expert_stanford_dogs": 120}
  # Two steps at lr 0.01 / 64 * 8 from the generalist's backbone: 2.4e-4 away in this
  # measure (a freshly initialised resnet18: 1.1); the heads are the student's own.
  backbone = student_lib.backbone_variables(variables, meta["heads"])
  generalist, _ = ckpt_lib.load_model_variables(gen)
  assert _relative_distance(backbone["params"], generalist["params"], skip="fc") < 0.05
  # test_accuracy: the generalist head on the 16 mock ImageNet validation images.
  student = student_lib.create("resnet18", 1000, meta["heads"])
  cfg = config_lib.expand_runs(c)["consolidated"]
  with tfds.testing.mock_data(num_examples=16):
    data = pipelines.create_dataset(cfg.data, 8, 8)
    correct = total = 0
    for b in data.eval_batches():
      _, features = student.apply(variables, b["image"], train=False)
      hits = np.argmax(features["logits/generalist"], -1) == b["label"]
      correct, total = correct + (hits * b["mask"]).sum(), total + b["mask"].sum()
  assert total == 16 and r["test_accuracy"] == pytest.approx(correct / 16, abs=1e-6)
  down = r["downstream"]["oxford_iiit_pet"]
  assert 0.0 <= down["linear_probe"]["top1"] <= 1.0 and down["finetune"]["epochs"] == 1
  saved = json.loads((workdir / "consolidated" / "results.json").read_text())
  assert saved["downstream"]["oxford_iiit_pet"]["finetune"]["top1"] == down["finetune"]["top1"]
  # The fine-tuning run (2 steps) started from the student's backbone, its classifier new.
  tuned, _ = ckpt_lib.load_model_variables(
      str(workdir / "consolidated" / "downstream" / "oxford_iiit_pet" / "finetune"))
  assert _relative_distance(tuned["params"], backbone["params"], skip="fc") < 0.05  # 1.8e-3


def _relative_distance(a, b, skip: str) -> float:
  """||a - b|| / ||b|| over the leaves of ``b`` whose path does not name ``skip``."""
  pairs = [(np.asarray(x), np.asarray(y)) for (path, y), x in zip(
      jax.tree_util.tree_leaves_with_path(b), jax.tree.leaves(a))
           if skip not in jax.tree_util.keystr(path)]
  return math.sqrt(sum(((x - y) ** 2).sum() for x, y in pairs) /
                   sum((y ** 2).sum() for _, y in pairs))


@pytest.mark.slow
def test_cfl_benchmark_runs_on_a_mock_union_of_cub_and_dogs(tmp_path_factory, capsys):
  c = _small(load_config("configs/amalgamation/cub_dogs.py"))  # resnet34 -> resnet18 here.
  c.runs = {"cfl": {**c.runs.cfl.to_dict(), "model": "resnet18",
                    "init_from": _checkpoint(tmp_path_factory, "resnet18", 1000),
                    "teachers": {
                        "teacher_birds": dict(model="resnet18", checkpoint=_checkpoint(
                            tmp_path_factory, "resnet18", 200)),
                        "teacher_dogs": dict(model="wrn_16_1", checkpoint=_checkpoint(
                            tmp_path_factory, "wrn_16_1", 120))}}}
  c.optimizer.lr_scale = {"student/fc": 10.0, "adapters/cfl": 5.0}
  workdir = tmp_path_factory.mktemp("cfl")
  with tfds.testing.mock_data(num_examples=16):
    r = job.run(c, str(workdir))["runs"]["cfl"]
  assert r["steps"] == 4  # 2 x 16 examples, batch 8.
  # The job's table: CFL's README number beside the measured one (the runs not made: "-").
  table = {row["row"]: row for row in json.loads((workdir / "table.json").read_text())["rows"]}
  assert table["cfl"]["published"] == 77.21 and table["cfl"]["seeds"] == 1
  assert table["cfl"]["measured"] == pytest.approx(100 * r["test_accuracy"])
  assert table["kd"]["measured"] is None
  assert "| CUB+Dogs -> resnet34 | cfl | 77.21 | " in (workdir / "table.md").read_text()
  assert set(r["eval"]) >= {"accuracy", "accuracy_birds", "accuracy_dogs"}
  out = capsys.readouterr().out
  report = [l for l in out.splitlines() if "step 4: train/" in l][-1]
  assert "loss_cfl=" in report and "loss_soft_ce=" in report
  values = dict(kv.split("=") for kv in report.split(": ", 1)[1].split(", "))
  assert all(math.isfinite(float(values[k])) for k in ("train/loss_cfl", "train/loss_soft_ce"))
