"""The ViT recipes (kd_jax/recipes/vit.py): DeiT's objectives and solver, the CNN <-> ViT
configs, and what the plan refuses for a ViT (one line each, before anything trains)."""
import pytest

from kd_jax import config as config_lib
from kd_jax import models, plan
from kd_jax.errors import KdJaxError
from kd_jax.recipes import vit
from tests.recipes.helpers import load_config, train_on_mock_imagenet

DEIT_HARD = {"ce": dict(weight=0.5), "deit": dict(weight=0.5)}


def test_deit_is_hard_distillation_at_alpha_one_half_on_a_distilled_student():
  c = load_config("configs/digits/vit.py", "deit")
  run = c.runs["deit"]
  assert run.model == "vit_micro_distilled_patch2_8"
  assert run.objectives.to_dict() == DEIT_HARD
  assert run.teachers.teacher.to_dict() == {"model": "resnet20", "run": "teacher"}
  assert (run.optimizer.name, run.optimizer.decay, run.optimizer.weight_decay) == (
      "adamw", "timm", 0.05)
  assert c.runs["teacher"].model == "resnet20" and "optimizer" not in c.runs["teacher"]
  config_lib.validate(c)


def test_deit_soft_is_the_papers_tau_3_lambda_0_1():
  assert vit.objectives("deit_soft", "resnet20-vit_micro_patch2_8") == {
      "ce": dict(weight=0.9), "deit": dict(weight=0.1, distillation_type="soft", tau=3.0)}


def test_a_vit_teacher_trains_with_the_vit_solver_and_a_cnn_student_with_its_own():
  c = load_config("configs/digits/vit.py", "kd,vit_micro_patch2_8-resnet8")
  assert c.runs["teacher"].optimizer.name == "adamw"
  assert c.runs["kd"].model == "resnet8" and "optimizer" not in c.runs["kd"]
  config_lib.validate(c)


def test_deit_needs_a_vit_student():
  with pytest.raises(KdJaxError, match=r"^deit trains a ViT student's distillation token; "
                     r"resnet8 is not a ViT$"):
    vit.digits_vit("deit", "resnet20-resnet8")


def test_cifar100_recipes_in_both_directions():
  c = load_config("configs/cifar100/vit.py", "deit")
  assert c.model == "vit_tiny_distilled_patch4_32" and c.batch_size == 128
  assert c.objectives.to_dict() == {"ce": dict(weight=0.5, label_smoothing=0.1),
                                    "deit": dict(weight=0.5)}
  assert c.teachers.teacher.to_dict() == {"model": "resnet32x4",
                                          "checkpoint": "workdirs/cifar100/teacher_resnet32x4"}
  assert (c.optimizer.name, c.optimizer.lr, c.optimizer.lr_reference_batch, c.num_epochs) == (
      "adamw", 5e-4, 128, 300)
  back = load_config("configs/cifar100/vit.py", "kd,vit_tiny_patch4_32-resnet8x4")
  assert back.model == "resnet8x4" and back.optimizer.name == "sgd"
  assert back.teachers.teacher.checkpoint == "workdirs/cifar100/teacher_vit_tiny_patch4_32"
  assert load_config("configs/cifar100/teacher_vit_tiny_patch4_32.py").optimizer.name == "adamw"
  for cfg in (c, back):
    config_lib.validate(cfg)


@pytest.mark.parametrize("arg, model", [("deit", "deit_tiny_distilled_patch16_224"),
                                        ("deit,small", "deit_small_distilled_patch16_224"),
                                        ("student,tiny", "deit_tiny_patch16_224")])
def test_imagenet_deit_is_deits_recipe(arg, model):
  """DeiT main.py: 300 epochs, lr 5e-4 per 512 images, AdamW wd 0.05 without decay on
  biases, norms and tokens, 5 warm-up epochs, cosine, label smoothing 0.1, drop path 0.1."""
  c = load_config("configs/imagenet/deit.py", arg)
  assert c.model == model and models.create(model, 1000).drop_path == 0.1
  assert (c.num_epochs, c.batch_size, c.optimizer.lr, c.optimizer.lr_reference_batch) == (
      300, 1024, 5e-4, 512)
  assert (c.optimizer.name, c.optimizer.weight_decay, c.optimizer.decay,
          c.optimizer.schedule, c.optimizer.warmup_epochs) == ("adamw", 0.05, "timm", "cosine", 5)
  assert (c.data.name, c.data.image_size) == ("imagenet2012", 224)
  assert c.objectives.ce.label_smoothing == 0.1
  if arg.startswith("student"):
    assert not c.teachers
  else:
    assert c.objectives.to_dict() == {"ce": dict(weight=0.5, label_smoothing=0.1),
                                      "deit": dict(weight=0.5)}
    assert c.teachers.teacher.to_dict() == {"model": "resnet50",
                                            "checkpoint": "workdirs/imagenet/resnet50"}
  config_lib.validate(c)


def _refusal(config, tmp_path):
  with pytest.raises(KdJaxError) as err:
    plan.make(config, str(tmp_path))
  return str(err.value)


def test_a_distilled_student_without_deit_is_refused(tmp_path):
  c = load_config("configs/digits/vit.py", "kd,resnet20-vit_micro_distilled_patch2_8")
  msg = _refusal(c, tmp_path)
  assert "\n" not in msg and msg.endswith(
      "config.model: vit_micro_distilled_patch2_8 has a distillation token and head that only "
      "an objective reading its logits/dist trains (objectives.deit), and its inference logits "
      "average both heads; add objectives.deit or train vit_micro_patch2_8")


def test_the_benchmarks_supervised_step_of_a_distilled_student_is_planned(tmp_path):
  """kd_jax.benchmark times CE alone on a distilled student (its student_step): a measurement,
  not a run, so the untrained distillation head is not refused there."""
  run = plan.make(load_config("configs/digits/vit.py", "deit"), str(tmp_path)).runs["deit"]
  with pytest.raises(KdJaxError, match="has a distillation token and head"):
    run.with_objectives({"ce": {"weight": 1.0}})
  measured = run.with_objectives({"ce": {"weight": 1.0}}, measurement_only=True)
  assert [o.name for o in measured.objectives] == ["ce"]


def test_deit_on_a_student_without_a_distillation_token_is_refused(tmp_path):
  c = load_config("configs/digits/vit.py", "kd")
  c.runs["kd"].objectives = DEIT_HARD
  msg = _refusal(c, tmp_path)
  assert "config.objectives.deit.student_feature: the model has no feature 'logits/dist'" in msg


@pytest.mark.parametrize("pair, side", [("resnet20-vit_micro_patch2_8", "student"),
                                        ("vit_micro_patch2_8-resnet8", "teacher 'teacher'")])
def test_spatial_methods_are_refused_on_either_vit_side(pair, side, tmp_path):
  c = load_config("configs/digits/vit.py", f"at,{pair}")
  msg = _refusal(c, tmp_path)
  assert "\n" not in msg and (
      f"config.objectives.at: loss 'at' compares spatial maps [B, H, W, C] on both sides, but "
      f"the {side} vit_micro_patch2_8 is a vision transformer (tokens [B, T, D])") in msg


@pytest.mark.parametrize("method", ["fitnet", "crd", "sp", "rkd", "pkt", "cc", "dkd"])
def test_methods_whose_meaning_carries_over_plan_on_a_vit_student(method, tmp_path):
  """FitNet regresses the ViT's patch tokens (as a map) onto the CNN's stage2; the relation,
  contrastive and logit methods read pooled features or logits."""
  assert plan.make(load_config("configs/digits/vit.py", method), str(tmp_path)).runs


@pytest.mark.slow
def test_deit_tiny_distils_from_a_resnet_on_mock_imagenet(tmp_path, fast_compilation):
  """configs/imagenet/deit.py, 2 steps at 32 px (2x2 patches): a random resnet18 with 1000
  classes stands in for the ResNet-50; the distillation head's loss is finite."""
  c = load_config("configs/imagenet/deit.py")
  results = train_on_mock_imagenet(c, tmp_path)
  assert results["steps"] == 2 and set(results["objectives"]) == {"ce", "deit"}


def test_the_deit_table_runs_each_size_beside_the_readmes():
  c = load_config("configs/imagenet/deit_table.py", "tiny+small,2")
  rows = {(table, row): (group, value) for table, row, group, value in c.published}
  assert rows == {
      ("deit_tiny", "student"): ("deit_tiny", 72.2),
      ("deit_tiny", "deit"): ("resnet50-deit_tiny-deit", 74.5),
      ("vitkd_deit_tiny", "student"): ("deit_tiny", 74.42),
      ("vitkd_deit_tiny", "vitkd"): ("deit_small_patch16_224-deit_tiny-vitkd", 76.06),
      ("vitkd_deit_tiny", "vitkd_nkd"): ("deit_small_patch16_224-deit_tiny-vitkd_nkd", 77.78),
      ("deit_small", "student"): ("deit_small", 79.9),
      ("deit_small", "deit"): ("resnet50-deit_small-deit", 81.2),
      ("vitkd_deit_small", "student"): ("deit_small", 80.55),
      ("vitkd_deit_small", "vitkd"): ("deit_base_patch16_224-deit_small-vitkd", 81.95),
      ("vitkd_deit_small", "vitkd_nkd"): ("deit_base_patch16_224-deit_small-vitkd_nkd", 83.59)}
  runs = config_lib.validated_runs(c)
  assert len(runs) == 16
  assert runs["resnet50-deit_small-deit_seed1"].model == "deit_small_distilled_patch16_224"
  assert runs["resnet50-deit_small-deit_seed1"].objectives.to_dict() == {
      "ce": dict(weight=0.5, label_smoothing=0.1), "deit": dict(weight=0.5)}
  vitkd = runs["deit_small_patch16_224-deit_tiny-vitkd_nkd_seed0"]
  assert vitkd.model == "deit_tiny_patch16_224" and vitkd.objectives.to_dict() == {
      "ce": dict(weight=1.0, label_smoothing=0.1),
      "nkd": dict(weight=1.0, temperature=1.0, gamma=1.0), "vitkd": dict(weight=1.0)}
  assert vitkd.teachers.teacher.to_dict() == {
      "model": "deit_small_patch16_224", "checkpoint": "workdirs/imagenet/deit_small_patch16_224"}
  assert not runs["deit_tiny_seed0"].teachers and runs["deit_tiny_seed0"].optimizer.name == "adamw"


def test_the_deit_table_argument_is_checked_in_one_line():
  with pytest.raises(KdJaxError, match=r"^table argument: unknown method\(s\) ofa; valid: "
                     r"student, deit, vitkd, vitkd_nkd$"):
    load_config("configs/imagenet/deit_table.py", "tiny,1,deit+ofa")


def test_vitkd_plans_between_two_vits_and_is_refused_with_a_cnn(tmp_path):
  assert plan.make(load_config("configs/digits/vit.py", "vitkd,vit_micro_patch2_8-vit_micro_patch2_8"),
                   str(tmp_path)).runs
  msg = _refusal(load_config("configs/digits/vit.py", "vitkd"), tmp_path)
  assert "\n" not in msg and msg.endswith(
      "config.objectives.vitkd: loss 'vitkd' reads a vision transformer's tokens [B, T, D] on "
      "both sides, but the teacher 'teacher' resnet20 is not a ViT")


def test_imagenet_ofa_is_the_readme_command_with_its_config():
  c = load_config("configs/imagenet/ofa.py")
  assert (c.model, c.teachers.teacher.model) == ("resnet18", "deit_tiny_patch16_224")
  assert c.objectives.to_dict() == {"ce": dict(weight=1.0, label_smoothing=0.1),
                                    "ofa": dict(weight=1.0, eps=(1.5,))}
  assert (c.num_epochs, c.batch_size, c.optimizer.lr, c.optimizer.weight_decay,
          tuple(c.optimizer.decay_epochs), c.optimizer.warmup_epochs) == (
              100, 512, 0.1, 1e-4, (30, 60, 90), 3)
  config_lib.validate(c)


@pytest.mark.parametrize("pair", ["resnet20-vit_micro_patch2_8", "vit_micro_patch2_8-resnet8"])
def test_ofa_plans_in_both_directions(pair, tmp_path):
  """Projectors for a ViT student's tokens and for a CNN student's maps."""
  p = plan.make(load_config("configs/digits/vit.py", f"ofa,{pair}"), str(tmp_path))
  run = p.runs["ofa"]
  student = pair.split("-")[1]
  stages = 4 if student.startswith("vit") else 3
  assert set(run.adapter_shapes["ofa"]) == {f"stage{k}" for k in range(1, stages + 1)}
