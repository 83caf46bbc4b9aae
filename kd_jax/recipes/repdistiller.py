"""RepDistiller's CIFAR-100 benchmark (Tian et al., ICLR 2020) as data: its methods with the
reference weights, its teacher -> student pairs, its teachers and its training recipe.

RepDistiller's loss is ``r * CE + a * KD + b * method``; ``METHODS`` writes each method's
``-r/-a/-b`` directly as ``config.objectives`` (an objective with weight 0 is absent)."""
from __future__ import annotations

from typing import Any

import ml_collections

from kd_jax.config import base_config
from kd_jax.errors import KdJaxError
from kd_jax.recipes import baselines

# method -> config.objectives, with the reference weights (README of RepDistiller, and
# scripts/run_cifar_distill.sh). KD's temperature is 4 throughout.
METHODS: dict[str, dict[str, dict[str, Any]]] = {
    "kd": {"ce": dict(weight=0.1), "kd": dict(weight=0.9)},
    "fitnet": {"ce": dict(weight=1.0), "fitnet": dict(weight=100.0)},
    "at": {"ce": dict(weight=1.0), "at": dict(weight=1000.0)},
    "sp": {"ce": dict(weight=1.0), "sp": dict(weight=3000.0)},
    "cc": {"ce": dict(weight=1.0), "cc": dict(weight=0.02)},
    "vid": {"ce": dict(weight=1.0), "vid": dict(weight=1.0)},
    "rkd": {"ce": dict(weight=1.0), "rkd": dict(weight=1.0)},
    "pkt": {"ce": dict(weight=1.0), "pkt": dict(weight=30000.0)},
    # AB and FSP act through their initialisation phase only (the reference's loss_kd = 0 in
    # the main phase); their weight is kept for the record.
    "ab": {"ce": dict(weight=1.0), "ab": dict(weight=1.0)},
    "ft": {"ce": dict(weight=1.0), "ft": dict(weight=200.0)},
    "fsp": {"ce": dict(weight=1.0), "fsp": dict(weight=50.0)},
    "nst": {"ce": dict(weight=1.0), "nst": dict(weight=50.0)},
    "crd": {"ce": dict(weight=1.0), "crd": dict(weight=0.8)},
    "crd_kd": {"ce": dict(weight=1.0), "kd": dict(weight=1.0), "crd": dict(weight=0.8)},
    # Not RepDistiller's: activation map adaptation [INFERRED] on top of KD
    # (T=4, alpha=0.9), its hint weighted like FitNet's; its phase runs 10 epochs first.
    "ama": {"ce": dict(weight=0.1), "kd": dict(weight=0.9), "ama": dict(weight=100.0)},
    # Not RepDistiller's: feature-statistic transfer (Yang et al.) on the last stage, each
    # with CE at weight 1: SRRL's channel means, means and standard deviations, AdaIN-KD
    # [INFERRED] (its statistics term at weight 1 inside, METHODS.md E) and SRRL's
    # teacher-head MSE (with its channel means on the same connector, SRRL's total).
    "mean_matching": {"ce": dict(weight=1.0), "mean_matching": dict(weight=1.0)},
    "stat_matching": {"ce": dict(weight=1.0), "stat_matching": dict(weight=1.0)},
    "adain": {"ce": dict(weight=1.0), "adain": dict(weight=1.0)},
    "srrl": {"ce": dict(weight=1.0), "teacher_head": dict(weight=1.0)},
}

# The teacher -> student pairs of RepDistiller's CIFAR-100 tables (Tables 1 and 2).
PAIRS: tuple[tuple[str, str], ...] = (
    ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
    ("resnet110", "resnet20"), ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"),
    ("vgg13", "vgg8"), ("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"),
    ("ResNet50", "vgg8"), ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"),
    ("wrn_40_2", "ShuffleV1"))
CIFAR100_TEACHERS = ("resnet56", "resnet110", "resnet32x4", "wrn_40_2", "vgg13", "ResNet50")
# The reference trains these students (and teachers) at lr 0.01 instead of 0.05.
LOW_LR_MODELS = ("MobileNetV2", "ShuffleV1", "ShuffleV2")


def teacher_workdir(model: str) -> str:
  """Where ``configs/cifar100/teacher_<model>.py`` is meant to be trained (and a converted
  PyTorch teacher written); the distillation configs read their teacher from here."""
  return f"workdirs/cifar100/teacher_{model}"


def learning_rate(model: str) -> float:
  """The reference's learning rate for ``model`` (per 64 images): 0.01 for MobileNet and
  ShuffleNet, else 0.05."""
  return 0.01 if model in LOW_LR_MODELS else 0.05


def _cifar100_recipe(model: str) -> ml_collections.ConfigDict:
  """240 epochs, batch 64, SGD 0.9, wd 5e-4, lr 0.05 (0.01 for MobileNet/ShuffleNet),
  x0.1 after epochs 150, 180 and 210; 4-px pad + crop + flip."""
  c = base_config()
  c.model = model
  c.data.name = "cifar100"
  c.batch_size = 64
  c.num_epochs = 240
  c.optimizer.name = "sgd"
  c.optimizer.lr = learning_rate(model)
  c.optimizer.lr_reference_batch = 64
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_epochs = (150, 180, 210)
  c.optimizer.decay_factor = 0.1
  c.log_every_steps = 200
  return c


def cifar100_teacher(model: str) -> ml_collections.ConfigDict:
  """A CIFAR-100 teacher trained with cross-entropy and the reference recipe."""
  return _cifar100_recipe(model)


def method_objectives(method: str, pair: str | None = None) -> dict[str, dict[str, Any]]:
  """``config.objectives`` of ``method``: RepDistiller's (``METHODS``) or a logit baseline's
  (``baselines.METHODS``, with its per-pair settings for ``pair``, default
  resnet32x4-resnet8x4)."""
  if method in baselines.METHODS:
    return baselines.objectives(method, pair or "resnet32x4-resnet8x4")
  if method not in METHODS:
    raise KdJaxError(f"unknown distillation method {method!r}; valid: "
                     f"{', '.join((*METHODS, *baselines.METHODS))}")
  return {k: dict(v) for k, v in METHODS[method].items()}


def parse_pair(arg: str | None, default: tuple[str, str]) -> tuple[str, str]:
  """``'<teacher>-<student>'`` (a config argument, e.g. ``--config=at.py:vgg13-vgg8``)."""
  if not arg:
    return default
  if arg.count("-") != 1:
    raise KdJaxError(f"config argument {arg!r}: expected <teacher>-<student>, e.g. vgg13-vgg8; "
                     f"the reference's pairs: {', '.join('-'.join(p) for p in PAIRS)}")
  teacher, student = arg.split("-")
  return teacher, student


def cifar100_distill(method: str, pair: str | None = None) -> ml_collections.ConfigDict:
  """RepDistiller's student recipe for ``method`` on ``pair`` (default resnet32x4-resnet8x4):
  the teacher's recipe for the student, the teacher read from ``teacher_workdir`` (a logit
  baseline: its objectives for that pair, ``baselines``)."""
  teacher, student = parse_pair(pair, ("resnet32x4", "resnet8x4"))
  c = _cifar100_recipe(student)
  c.teachers = {"teacher": dict(model=teacher, checkpoint=teacher_workdir(teacher))}
  c.objectives = method_objectives(method, f"{teacher}-{student}")
  own = baselines.solver(method, f"{teacher}-{student}")
  if own:
    c.num_epochs, c.optimizer.lr = own["num_epochs"], own["lr"]
  return c
