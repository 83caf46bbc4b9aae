"""configs/imagenet/<method>.py: the baselines' ResNet-34 -> ResNet-18 recipes as their authors
ran them, and all of them training together on mock ImageNet."""
import math

import pytest

from kd_jax import config as config_lib
from kd_jax import recipes
from kd_jax.errors import KdJaxError
from tests.recipes.helpers import load_config, train_on_mock_imagenet

# METHODS.md G and the files named in kd_jax/recipes/baselines.py.
WANT = {
    "student": ({"ce": dict(weight=1.0)}, 100),
    "kd": ({"ce": dict(weight=0.5), "kd": dict(weight=0.5, temperature=1.0)}, 100),
    "dist": ({"ce": dict(weight=1.0), "dist": dict(weight=2.0, temperature=1.0)}, 100),
    "dkd": ({"ce": dict(weight=1.0), "dkd": dict(weight=1.0, alpha=1.0, beta=0.5,
                                                 temperature=1.0, warmup=1.0)}, 100),
    "kd_ls": ({"ce": dict(weight=1.0), "kd": dict(weight=9.0, temperature=2.0,
                                                  logit_stand=True)}, 100),
    "nkd": ({"ce": dict(weight=1.0), "nkd": dict(weight=1.0, temperature=1.0, gamma=1.5)}, 100),
    "ctkd": ({"ce": dict(weight=1.0), "ctkd": dict(weight=1.0, decay_loops=5.0)}, 120),
    "ctkd_dkd": ({"ce": dict(weight=1.0), "ctkd": dict(weight=1.0, base="dkd", alpha=1.0,
                                                       beta=1.0, decay_loops=5.0)}, 120),
    "reviewkd": ({"ce": dict(weight=1.0), "reviewkd": dict(
        weight=1.0, warmup=1.0, student_feature=("preact_stages", "pooled"))}, 100),
}


@pytest.mark.parametrize("method", sorted(WANT))
def test_imagenet_recipe_is_the_authors(method):
  c = recipes.imagenet_distill(method) if method in ("student", "kd") else load_config(
      f"configs/imagenet/{method}.py")
  objectives, epochs = WANT[method]
  assert c.objectives.to_dict() == objectives and c.num_epochs == epochs
  assert c.model == "resnet18"
  if method == "student":
    assert not c.teachers
  else:
    assert c.teachers.teacher.to_dict() == {"model": "resnet34",
                                            "checkpoint": "workdirs/imagenet/resnet34"}
  assert (c.data.name, c.data.image_size, c.batch_size) == ("imagenet2012", 224, 256)
  assert (c.optimizer.lr, c.optimizer.lr_reference_batch, c.optimizer.weight_decay) == (
      0.1, 256, 1e-4)
  assert tuple(c.optimizer.decay_epochs) == (30, 60, 90)
  config_lib.validate(c)


@pytest.mark.slow
def test_the_imagenet_baselines_train_together_on_mock_imagenet(tmp_path, capsys):
  """Every recipe's objectives in one run (one compilation), 2 steps at 32 px; a random
  resnet18 with 1000 classes stands in for the ResNet-34 (the same logits and feature shapes)."""
  c = load_config("configs/imagenet/dist.py")
  c.objectives = {"ce": dict(weight=1.0), **{
      f"{m}_{name}": dict(entry, loss=name) for m, (objs, _) in WANT.items()
      for name, entry in objs.items() if name != "ce"}}
  results = train_on_mock_imagenet(c, tmp_path)
  assert results["steps"] == 2 and len(results["objectives"]) == 9
  line = [l for l in capsys.readouterr().out.splitlines() if "step 2: train/" in l][-1]
  for name in results["objectives"]:
    value = float(line.split(f"train/loss_{name}=")[1].split(",")[0])
    assert math.isfinite(value), line


def test_the_imagenet_table_runs_each_recipe_beside_the_published_numbers():
  c = load_config("configs/imagenet/table.py", "student+dist+reviewkd+wttm,2")
  rows = {row: (group, value) for _, row, group, value in c.published}
  assert rows == {"teacher": ("teacher_resnet34", 73.31),
                  "student": ("student_resnet18", 69.76),
                  "dist": ("resnet34-resnet18-dist", 72.07),
                  "reviewkd": ("resnet34-resnet18-reviewkd", 71.61),
                  "wttm": ("resnet34-resnet18-wttm", 72.19)}
  runs = config_lib.validated_runs(c)
  assert sorted(runs) == sorted(f"{g}_seed{k}" for g in ("student_resnet18",
                                                         "resnet34-resnet18-dist",
                                                         "resnet34-resnet18-reviewkd")
                                for k in (0, 1))
  for name, run in runs.items():
    method = "student" if name.startswith("student") else name.split("-")[-1].rsplit("_seed")[0]
    assert run.objectives.to_dict() == WANT[method][0] and run.num_epochs == WANT[method][1]
    assert run.model == "resnet18" and run.data.name == "imagenet2012"
  assert not runs["student_resnet18_seed1"].teachers and runs["student_resnet18_seed1"].seed == 1
  assert runs["resnet34-resnet18-dist_seed0"].teachers.teacher.checkpoint == (
      "workdirs/imagenet/resnet34")


def test_the_imagenet_table_argument_is_checked_in_one_line():
  with pytest.raises(KdJaxError, match=r"^table argument: unknown method\(s\) crd; valid: "
                     r"student, kd, dist"):
    recipes.parse_imagenet_table_arg("kd+crd")
