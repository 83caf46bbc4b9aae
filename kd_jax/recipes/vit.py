"""Vision transformers' recipes: DeiT's ImageNet recipe (a DeiT-Ti or DeiT-S student from a
ResNet teacher), CIFAR-100 (a ViT student from resnet32x4, a resnet8x4 from a ViT teacher)
and their digits twins. A ViT trains with DeiT's optimiser (AdamW, weight decay 0.05 but
not on biases, norms, tokens and position embeddings, linear warm-up, cosine); a CNN student
keeps its family's recipe.

DeiT's training recipe (facebookresearch/deit ``main.py``) that kd_jax lacks, so that the
ImageNet recipe is DeiT's less these: mixup 0.8 / cutmix 1.0 with label mixing, RandAugment
rand-m9-mstd0.5-inc1 on the loader's images (kd_jax has RandAugment only as MLKD's strong
view), random erasing 0.25, repeated augmentation, and its RegNetY-16GF teacher (not in the
zoo: a ResNet-50 stands in).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from kd_jax.config import base_config
from kd_jax.errors import KdJaxError
from kd_jax.recipes import digits, imagenet, published, repdistiller
from kd_jax.recipes.repdistiller import parse_pair

# ViT methods' objectives; every other method name is RepDistiller's or a logit baseline's.
#   deit       DeiT main.py: --distillation-type hard, alpha 0.5: CE 0.5 (class head) + 0.5 CE
#              of the distillation head with the teacher's argmax.
#   deit_soft  DeiT paper (section 5.1): soft distillation at tau 3, lambda 0.1: CE 0.9 +
#              0.1 soft (the reference's KL over B * K).
#   ofa        OFAKD train.py with configs/{cifar,imagenet}/*.yaml: CE 1 with label smoothing 0.1
#              + OFA on every stage and the logits (eps 1: its CIFAR-100 command; ImageNet
#              1.5, ``imagenet_ofa``), temperature 1.
#   vitkd      cls_KD deit-s3_distill_deit-t_img.py: CE 1 + ViTKD (alpha 3e-5, beta 3e-6,
#              lambda 0.5), ViT -> ViT.
#   vitkd_nkd  the same config as run (nkd = True): + NKD (T 1, gamma 1).
VIT_METHODS = {
    "deit": {"ce": dict(weight=0.5), "deit": dict(weight=0.5)},
    "deit_soft": {"ce": dict(weight=0.9),
                  "deit": dict(weight=0.1, distillation_type="soft", tau=3.0)},
    "ofa": {"ce": dict(weight=1.0, label_smoothing=0.1), "ofa": dict(weight=1.0)},
    "vitkd": {"ce": dict(weight=1.0), "vitkd": dict(weight=1.0)},
    "vitkd_nkd": {"ce": dict(weight=1.0), "nkd": dict(weight=1.0, temperature=1.0, gamma=1.0),
                  "vitkd": dict(weight=1.0)},
}
DEIT_METHODS = ("deit", "deit_soft")  # Those that train a distillation token.


def is_vit(model: str) -> bool:
  return model.startswith(("deit_", "vit_"))


def distilled(model: str) -> str:
  """The model with a distillation token of the ViT ``model`` (``deit_tiny_patch16_224`` ->
  ``deit_tiny_distilled_patch16_224``)."""
  if "_distilled" in model:
    return model
  size, _, rest = model.partition("_patch")
  return f"{size}_distilled_patch{rest}"


def objectives(method: str, pair: str, label_smoothing: float = 0.0) -> dict[str, dict[str, Any]]:
  """``config.objectives`` of ``method`` for ``pair``; DeiT's with CE at ``label_smoothing``."""
  if method in VIT_METHODS:
    out = {k: dict(v) for k, v in VIT_METHODS[method].items()}
    if label_smoothing:
      out["ce"]["label_smoothing"] = label_smoothing
    return out
  try:
    return repdistiller.method_objectives(method, pair)
  except KdJaxError:
    raise KdJaxError(f"unknown distillation method {method!r}; valid: "
                     f"{', '.join((*VIT_METHODS, *repdistiller.METHODS))}, ...") from None


def vit_solver(c: ml_collections.ConfigDict, *, lr: float, reference_batch: int, epochs: int,
               warmup_epochs: float) -> None:
  """DeiT's optimiser on ``c``: AdamW (weight decay 0.05, timm's no-decay groups), ``lr`` per
  ``reference_batch`` images, linear warm-up then cosine."""
  c.num_epochs = epochs
  c.optimizer.name = "adamw"
  c.optimizer.lr = lr
  c.optimizer.lr_reference_batch = reference_batch
  c.optimizer.weight_decay = 0.05
  c.optimizer.decay = "timm"
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_epochs = warmup_epochs


def _student_model(method: str, student: str) -> str:
  if method in DEIT_METHODS:
    if not is_vit(student):
      raise KdJaxError(f"{method} trains a ViT student's distillation token; {student} is not "
                       f"a ViT")
    return distilled(student)
  return student


# [INFERRED] from runs on the digits (a vit_micro from scratch: 95-96% at 60 epochs with
# these, 2026-12-05): AdamW lr 1e-3 per 64 images, 3 warm-up epochs, 60 epochs.
DIGITS_VIT = dict(lr=1e-3, reference_batch=64, epochs=60, warmup_epochs=3)


def _digits_run(model: str) -> dict[str, Any]:
  """A digits run's fields for ``model``: the ViT solver for a ViT, else digits_base's."""
  if not is_vit(model):
    return {"model": model}
  c = digits.digits_base(model)
  vit_solver(c, **DIGITS_VIT)
  return {"model": model, "num_epochs": c.num_epochs, "optimizer": c.optimizer.to_dict()}


def digits_vit(method: str, pair: str | None = None) -> ml_collections.ConfigDict:
  """``method`` between a CNN and a ViT on the embedded digits: a job that trains the teacher
  (run ``teacher``) and then the student (run ``<method>``), each with its family's solver.
  Default pair resnet20 -> vit_micro_patch2_8; ``vit_micro_patch2_8-resnet8`` the other way.
  DeiT's methods give the student its distillation token (``vit_micro_distilled_patch2_8``)."""
  teacher, student = parse_pair(pair, ("resnet20", "vit_micro_patch2_8"))
  c = digits.digits_base()
  c.runs = {
      "teacher": _digits_run(teacher),
      method: dict(**_digits_run(_student_model(method, student)),
                   teachers={"teacher": dict(model=teacher, run="teacher")},
                   objectives=objectives(method, f"{teacher}-{student}")),
  }
  return c


def digits_vit_table(seeds: int = 3, methods: tuple[str, ...] = ("kd", "deit", "ofa")
                     ) -> ml_collections.ConfigDict:
  """CNN <-> ViT on the embedded digits, ``seeds`` seeds each, mean +- std per group: a
  resnet20 teacher (run ``cnn_teacher``) and a vit_micro_patch2_8 teacher (run
  ``vit_teacher``), then per seed ``vit_scratch`` and ``cnn_to_vit_<m>`` (vit_micro students,
  ``methods``; DeiT's with the distillation token), ``cnn_scratch`` and ``vit_to_cnn_<m>``
  (resnet8 students; DeiT's methods need a ViT student and are left out)."""
  c = digits.digits_base()
  runs = {"cnn_teacher": _digits_run("resnet20"), "vit_teacher": _digits_run("vit_micro_patch2_8")}
  ce = {"ce": dict(weight=1.0)}
  for seed in range(seeds):
    for student, teacher, prefix in (("vit_micro_patch2_8", "cnn_teacher", "cnn_to_vit"),
                                     ("resnet8", "vit_teacher", "vit_to_cnn")):
      scratch = "vit_scratch" if is_vit(student) else "cnn_scratch"
      runs[f"{scratch}_seed{seed}"] = dict(**_digits_run(student), seed=seed, objectives=ce,
                                           teachers={})
      t_model = runs[teacher]["model"]
      for m in methods:
        if m in DEIT_METHODS and not is_vit(student):
          continue
        runs[f"{prefix}_{m}_seed{seed}"] = dict(
            **_digits_run(_student_model(m, student)), seed=seed,
            objectives=objectives(m, f"{t_model}-{student}"),
            teachers={"teacher": dict(model=t_model, run=teacher)})
  c.runs = runs
  return c


# [INFERRED] a ViT from scratch on CIFAR-100 (the ViT-Lite recipe of Hassani et al., 2021,
# "Escaping the big data paradigm with compact transformers": AdamW lr 5e-4 at batch 128,
# 10 warm-up epochs, 300 epochs, label smoothing 0.1), with DeiT's weight decay 0.05.
CIFAR_VIT = dict(lr=5e-4, reference_batch=128, epochs=300, warmup_epochs=10)


def cifar100_vit_teacher(model: str = "vit_tiny_patch4_32") -> ml_collections.ConfigDict:
  """A ViT teacher on CIFAR-100 from scratch: CE (label smoothing 0.1), the ViT solver,
  RepDistiller's augmentation (pad 4, crop, flip)."""
  c = repdistiller.cifar100_teacher(model)
  c.batch_size = 128
  vit_solver(c, **CIFAR_VIT)
  c.objectives = {"ce": dict(weight=1.0, label_smoothing=0.1)}
  return c


def cifar100_vit(method: str, pair: str | None = None) -> ml_collections.ConfigDict:
  """``method`` between a CNN and a ViT on CIFAR-100: default resnet32x4 -> vit_tiny_patch4_32
  (a ViT student: the ViT solver, batch 128); ``vit_tiny_patch4_32-resnet8x4`` the other way
  (a CNN student: RepDistiller's recipe for it). The teacher is read from
  ``teacher_workdir(teacher)`` (configs/cifar100/teacher_<model>.py)."""
  teacher, student = parse_pair(pair, ("resnet32x4", "vit_tiny_patch4_32"))
  model = _student_model(method, student)
  if is_vit(student):
    c = repdistiller.cifar100_teacher(model)
    c.batch_size = 128
    vit_solver(c, **CIFAR_VIT)
  else:
    c = repdistiller.cifar100_teacher(student)
  c.teachers = {"teacher": dict(model=teacher,
                                checkpoint=repdistiller.teacher_workdir(teacher))}
  c.objectives = objectives(method, f"{teacher}-{student}",
                            label_smoothing=0.1 if is_vit(student) else 0.0)
  return c


# The teacher of each ImageNet method (``workdirs/imagenet/<teacher>``): DeiT's distillation
# token from a CNN (DeiT's RegNetY-16GF is not in the zoo: a ResNet-50), ViTKD from the next
# DeiT size (its README: DeiT III-Small for DeiT-Tiny, -Base for -Small; DeiT III's layer scale
# is not in the zoo: DeiT's).
IMAGENET_TEACHERS = {"deit": "resnet50", "deit_soft": "resnet50",
                     "vitkd": {"tiny": "deit_small_patch16_224", "small": "deit_base_patch16_224"},
                     "vitkd_nkd": {"tiny": "deit_small_patch16_224",
                                   "small": "deit_base_patch16_224"}}


def imagenet_teacher(method: str, size: str) -> str:
  teacher = IMAGENET_TEACHERS[method]
  return teacher[size] if isinstance(teacher, dict) else teacher


def imagenet_deit(method: str = "deit", size: str = "tiny",
                  teacher: str = "") -> ml_collections.ConfigDict:
  """DeiT-``size`` (tiny | small) on ImageNet at 224 px with ``method`` (``VIT_METHODS``, or
  "student": no teacher, CE alone) from ``teacher`` (default ``IMAGENET_TEACHERS``; read from
  ``workdirs/imagenet/<teacher>``), DeiT's recipe less what the module docstring lists: 300
  epochs, batch 1024, AdamW lr 5e-4 per 512 images, weight decay 0.05 (timm's groups), 5
  warm-up epochs, cosine, label smoothing 0.1, stochastic depth 0.1 (the model's default)."""
  if size not in ("tiny", "small"):
    raise KdJaxError(f"DeiT size must be tiny or small, got {size!r}")
  if method != "student" and method not in VIT_METHODS:
    raise KdJaxError(f"unknown ImageNet ViT method {method!r}; valid: student, "
                     f"{', '.join(VIT_METHODS)}")
  teacher = teacher or (imagenet_teacher(method, size) if method != "student" else "")
  student = f"deit_{size}_patch16_224"
  c = base_config()
  c.model = student if method == "student" else _student_model(method, student)
  imagenet.imagenet_like(c, "imagenet2012")
  c.batch_size = 1024
  c.eval_batch_size = 1024
  vit_solver(c, lr=5e-4, reference_batch=512, epochs=300, warmup_epochs=5)
  if method == "student":
    c.teachers = {}
    c.objectives = {"ce": dict(weight=1.0, label_smoothing=0.1)}
  else:
    c.teachers = {"teacher": dict(model=teacher,
                                  checkpoint=f"{imagenet.IMAGENET_WORKDIR}/{teacher}")}
    c.objectives = objectives(method, f"{teacher}-{student}", label_smoothing=0.1)
  c.log_every_steps = 500
  c.checkpoint_every_steps = 2000
  return c


IMAGENET_VIT_TABLE_METHODS = ("student", "deit", "vitkd", "vitkd_nkd")


def imagenet_deit_table(sizes: tuple[str, ...] = ("tiny", "small"), seeds: int = 1,
                        methods: tuple[str, ...] = IMAGENET_VIT_TABLE_METHODS
                        ) -> ml_collections.ConfigDict:
  """The ViT methods' ImageNet rows for ``sizes`` x ``methods`` x ``seeds``: per size the
  student alone (``deit_<size>_seed<k>``) and each method from its teacher
  (``<teacher>-deit_<size>-<method>_seed<k>``), ``imagenet_deit``'s recipe; DeiT's and
  ViTKD's README numbers in ``config.published`` (each README's own baseline beside the same
  student-alone runs)."""
  unknown = [m for m in methods if m not in IMAGENET_VIT_TABLE_METHODS]
  if unknown:
    raise KdJaxError(f"table argument: unknown method(s) {', '.join(unknown)}; valid: "
                     f"{', '.join(IMAGENET_VIT_TABLE_METHODS)}")
  c = imagenet_deit("student", sizes[0])
  runs: dict[str, dict] = {}
  rows: list[tuple] = []
  for size in sizes:
    for method in methods:
      recipe = imagenet_deit(method, size)
      group = (f"deit_{size}" if method == "student" else
               f"{imagenet_teacher(method, size)}-deit_{size}-{method}")
      for table, numbers in ((f"deit_{size}", published.DEIT[size]),
                             (f"vitkd_deit_{size}", published.VITKD[size])):
        if method in numbers:
          rows.append((table, method, group, numbers[method]))
      for seed in range(seeds):
        runs[f"{group}_seed{seed}"] = dict(model=recipe.model, seed=seed,
                                           objectives=recipe.objectives.to_dict(),
                                           teachers=recipe.teachers.to_dict())
  c.runs = runs
  c.published = tuple(rows)
  c.published_source = published.DEIT_SOURCE + "; " + published.VITKD_SOURCE
  return c


def imagenet_ofa(student: str = "resnet18", teacher: str = "deit_tiny_patch16_224"
                 ) -> ml_collections.ConfigDict:
  """OFA's ImageNet command (its README: a ResNet-18 from DeiT-T, ``--ofa-eps 1.5``) with
  ``configs/imagenet/cnn.yaml``: 100 epochs, 8 x 64 images, SGD lr 0.1 (timm's, for the global
  batch), weight decay 1e-4, x0.1 every 30 epochs after 3 warm-up epochs, label smoothing 0.1;
  CE + OFA on every stage and the logits. The teacher is read from
  ``workdirs/imagenet/<teacher>``."""
  c = base_config()
  c.model = student
  imagenet.imagenet_like(c, "imagenet2012")
  c.teachers = {"teacher": dict(model=teacher, checkpoint=f"{imagenet.IMAGENET_WORKDIR}/{teacher}")}
  c.objectives = {"ce": dict(weight=1.0, label_smoothing=0.1),
                  "ofa": dict(weight=1.0, eps=(1.5,))}
  imagenet.resnet_solver(c, 512, 100, warmup_epochs=3)
  return c
