"""The published recipes as data: RepDistiller's CIFAR-100 benchmark (Tian et al., ICLR 2020)
and its scaled-down twin on the embedded digits.

``configs/cifar100/*.py`` and ``configs/digits/*.py`` are one-line ``get_config`` files
that call these functions; every field can still be overridden on the command line.

RepDistiller's loss is ``r * CE + a * KD + b * method``; ``METHODS`` writes each method's
``-r/-a/-b`` directly as ``config.objectives`` (an objective with weight 0 is absent).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from kd_jax.config import base_config
from kd_jax.errors import KdJaxError

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
    # AB and FSP act through their initialisation stage only (the reference's loss_kd = 0 in
    # the main stage); their weight is kept for the record.
    "ab": {"ce": dict(weight=1.0), "ab": dict(weight=1.0)},
    "ft": {"ce": dict(weight=1.0), "ft": dict(weight=200.0)},
    "fsp": {"ce": dict(weight=1.0), "fsp": dict(weight=50.0)},
    "nst": {"ce": dict(weight=1.0), "nst": dict(weight=50.0)},
    "crd": {"ce": dict(weight=1.0), "crd": dict(weight=0.8)},
    "crd_kd": {"ce": dict(weight=1.0), "kd": dict(weight=1.0), "crd": dict(weight=0.8)},
    # Not RepDistiller's: activation map adaptation [INFERRED] on top of KD
    # (T=4, alpha=0.9), its hint weighted like FitNet's; its stage runs 10 epochs first.
    "ama": {"ce": dict(weight=0.1), "kd": dict(weight=0.9), "ama": dict(weight=100.0)},
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


def _cifar100_recipe(model: str) -> ml_collections.ConfigDict:
  """240 epochs, batch 64, SGD 0.9, wd 5e-4, lr 0.05 (0.01 for MobileNet/ShuffleNet),
  x0.1 after epochs 150, 180 and 210; 4-px pad + crop + flip."""
  c = base_config()
  c.model = model
  c.data.name = "cifar100"
  c.batch_size = 64
  c.num_epochs = 240
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01 if model in LOW_LR_MODELS else 0.05
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


def _method(method: str) -> dict[str, dict[str, Any]]:
  if method not in METHODS:
    raise KdJaxError(f"unknown distillation method {method!r}; valid: {', '.join(METHODS)}")
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
  the teacher's recipe for the student, the teacher read from ``teacher_workdir``."""
  teacher, student = parse_pair(pair, ("resnet32x4", "resnet8x4"))
  c = _cifar100_recipe(student)
  c.teachers = {"teacher": dict(model=teacher, checkpoint=teacher_workdir(teacher))}
  c.objectives = _method(method)
  return c


def digits_base(model: str = "resnet8") -> ml_collections.ConfigDict:
  """The embedded digits (8x8x1, offline), batch 64, 30 epochs, SGD lr 0.05 with a cosine
  schedule: every digits config starts here."""
  c = base_config()
  c.model = model
  c.data.name = "sklearn_digits"
  c.batch_size = 64
  c.num_epochs = 30
  c.optimizer.lr = 0.05
  c.optimizer.schedule = "cosine"
  c.log_every_steps = 100
  return c


def digits_distill(method: str, pair: str | None = None) -> ml_collections.ConfigDict:
  """The same method on the embedded digits, sized to run in minutes on a CPU: a job that
  trains the teacher (run ``teacher``) and then the student (run ``<method>``). Several
  methods can share a workdir: the finished teacher run is reused.

  Differences from the CIFAR recipe: 30 epochs with a cosine schedule, 8x8 images,
  resnet20 -> resnet8 by default, CRD with 1,024 negatives (the train split has 1,437
  examples)."""
  teacher, student = parse_pair(pair, ("resnet20", "resnet8"))
  c = digits_base()
  objectives = _method(method)
  if "crd" in objectives:
    objectives["crd"]["nce_k"] = 1024
  c.runs = {
      "teacher": dict(model=teacher),
      method: dict(model=student, teachers={"teacher": dict(model=teacher, run="teacher")},
                   objectives=objectives),
  }
  return c


def digits_scarce_labels(fraction: float = 0.1, seeds: int = 3) -> ml_collections.ConfigDict:
  """Distillation when labels are scarce, on the embedded digits: a resnet20 teacher trained
  on every train label (run ``teacher``), then, per seed, three resnet8 students that see
  every train image but only ``fraction`` of the labels (the same labelled subset for all):
  ``scratch_seed<k>`` (CE on the labelled examples), ``kd_seed<k>`` (0.1 CE + 0.9 KD) and
  ``crd_seed<k>`` (CE + 0.8 CRD, 1,024 negatives). The job prints mean +- std per method."""
  c = digits_distill("kd")
  teacher = c.runs["teacher"].to_dict()
  students = {"scratch": {"ce": dict(weight=1.0)}, "kd": _method("kd"), "crd": _method("crd")}
  students["crd"]["crd"]["nce_k"] = 1024
  runs = {"teacher": teacher}
  for seed in range(seeds):
    for name, objectives in students.items():
      runs[f"{name}_seed{seed}"] = dict(
          model="resnet8", seed=seed, objectives=objectives,
          data=dict(labeled_fraction=fraction),
          teachers={"teacher": dict(model=teacher["model"], run="teacher")}
          if name != "scratch" else {})
  c.runs = runs
  return c


# -- Several teachers on the embedded digits ---------------------------------------------
# Three teachers of three architectures: a generalist on every digit and two experts on
# disjoint halves of the classes (their labels 0-4 are digits 0-4 and 5-9 respectively).
DIGITS_TEACHERS = {
    "generalist": dict(model="resnet20"),
    "expert_low": dict(model="wrn_16_2", data=dict(classes=(0, 1, 2, 3, 4))),
    "expert_high": dict(model="vgg8", data=dict(classes=(5, 6, 7, 8, 9))),
}


def digits_downstream(config: ml_collections.ConfigDict) -> None:
  """Sets ``config.downstream`` to the embedded transfer task: the transposed digits
  (``sklearn_digits_transposed``, a task no digits model has seen); linear probe and 30
  epochs of fine-tuning (SGD lr 0.02, cosine)."""
  ds = config.downstream
  ds.data.name = "sklearn_digits_transposed"
  ds.protocols = ("linear_probe", "finetune")
  ds.num_epochs = 30
  ds.batch_size = 64
  ds.optimizer.lr = 0.02
  ds.optimizer.schedule = "cosine"


def _digits_teacher_runs(names) -> dict[str, dict]:
  no_downstream = dict(downstream=dict(data=dict(name="")))
  return {n: {**DIGITS_TEACHERS[n], **no_downstream} for n in names}


def _teachers(names) -> dict[str, dict]:
  return {n: dict(model=DIGITS_TEACHERS[n]["model"], run=n) for n in names}


def digits_consolidation(seeds: int = 3, temperature: float = 1.0) -> ml_collections.ConfigDict:
  """Representation consolidation on the embedded digits, judged downstream.

  Runs: the teachers (``generalist`` resnet20 on all digits, ``expert_low`` wrn_16_2 on
  0-4, ``expert_high`` vgg8 on 5-9); then per seed: ``consolidated_seed<k>``, a resnet8
  with one head per teacher distilled (KD, T=``temperature``, weight 1 per head) on the
  train images with their labels dropped (the proxy data); ``kd_generalist_seed<k>``, a
  resnet8 distilled from the generalist alone (single-head KD); and downstream-only runs of
  each teacher's backbone and of a random resnet8 (``scratch_seed<k>``). Every student and
  backbone is evaluated on the transposed digits (linear probe and fine-tuning); the job
  prints mean +- std per group."""
  c = digits_base()
  digits_downstream(c)
  names = list(DIGITS_TEACHERS)
  runs = _digits_teacher_runs(names)
  kd = lambda t: dict(loss="kd", teacher=t, temperature=temperature)
  for seed in range(seeds):
    proxy = dict(unlabeled=True)
    runs[f"consolidated_seed{seed}"] = dict(
        model="resnet8", seed=seed, data=proxy, teachers=_teachers(names),
        student_heads=tuple(names), eval_head="generalist",
        objectives={f"kd_{t}": kd(t) for t in names})
    runs[f"kd_generalist_seed{seed}"] = dict(
        model="resnet8", seed=seed, data=proxy, teachers=_teachers(["generalist"]),
        objectives={"kd": kd("generalist")})
    for t in names:
      runs[f"{t}_seed{seed}"] = dict(model=DIGITS_TEACHERS[t]["model"], seed=seed,
                                     downstream=dict(backbone=t))
    runs[f"scratch_seed{seed}"] = dict(model="resnet8", seed=seed,
                                       downstream=dict(backbone="random"))
  c.runs = runs
  return c


def digits_amalgamation(seeds: int = 3, cfl_weight: float = 10.0,
                        hidden: int = 32) -> ml_collections.ConfigDict:
  """Knowledge amalgamation (CFL) on the embedded digits: the two experts (wrn_16_2 on
  digits 0-4, vgg8 on 5-9) into one resnet8 over the union of their classes (10-way, the
  experts' logits concatenated in that order), on the train images with labels dropped.

  Per seed: ``cfl_seed<k>`` (soft-target CE over the union, weight 1, T=1, plus
  ``cfl_weight`` * CFL with MMD and reconstruction, as the paper's code) and the KD-only
  baseline ``kd_seed<k>``. The common space is ``hidden`` = 32 wide (the paper's code: 128
  for 512-channel ResNet features; KamalEngine: a quarter of the student's channels, here
  64 / 4 = 16); its learning rate is a tenth of the student's (``optimizer.lr_scale``;
  the paper's code gives the block its own Adam learning rate; with SGD at the student's
  0.05 and weight 10 the block diverged within 14 steps). Each is evaluated on the
  10-way test set and on each expert's
  task (``task/expert_low``: test digits 0-4, logits 0-4; ``task/expert_high``), beside the
  experts' own test accuracy on their task."""
  c = digits_base()
  names = ["expert_low", "expert_high"]
  runs = _digits_teacher_runs(names)
  tasks = {n: tuple(DIGITS_TEACHERS[n]["data"]["classes"]) for n in names}
  for seed in range(seeds):
    common = dict(model="resnet8", seed=seed, data=dict(unlabeled=True),
                  teachers=_teachers(names), eval_tasks=tasks)
    soft = dict(loss="soft_ce", teacher=names, temperature=1.0)
    runs[f"cfl_seed{seed}"] = dict(**common, optimizer=dict(lr_scale={"aux/cfl": 0.1}),
                                   objectives={"soft_ce": soft, "cfl": dict(
                                       teacher=names, weight=cfl_weight, hidden=hidden)})
    runs[f"kd_seed{seed}"] = dict(**common, objectives={"soft_ce": soft})
  c.runs = runs
  return c


# -- Several teachers at paper scale -------------------------------------------------------
# ImageNet models are kd_jax runs: trained with configs/imagenet/supervised.py, or converted
# from torchvision weights (python -m kd_jax.convert --arch=resnet50 --torch=resnet50.pth
# --out=workdirs/imagenet/resnet50).
IMAGENET_WORKDIR = "workdirs/imagenet"
FINE_GRAINED_CLASSES = {"caltech_birds2011": 200, "stanford_dogs": 120, "oxford_flowers102": 102,
                        "oxford_iiit_pet": 37, "cars196": 196}
_EVAL_SPLIT = {"imagenet2012": "validation"}  # Every other data set here: test.


def _imagenet_like(c: ml_collections.ConfigDict, name: str, unlabeled: bool = False) -> None:
  """Sets ``c.data`` (``c``: a config or its downstream group) to ``name`` at 224 px with
  ImageNet's preparation (the data sets' presets), not cached in memory."""
  c.data.name = name
  c.data.train_split = "train"
  c.data.eval_split = "+".join(_EVAL_SPLIT.get(n, "test") for n in name.split("+"))
  c.data.image_size = 224
  c.data.unlabeled = unlabeled
  c.data.cache = False


def _fine_tune(c: ml_collections.ConfigDict, epochs: int = 30) -> None:
  """[INFERRED] fine-tuning of an ImageNet backbone on a fine-grained task: SGD lr 0.01 per
  64 images, cosine, weight decay 1e-4."""
  c.batch_size = 64
  c.num_epochs = epochs
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01
  c.optimizer.lr_reference_batch = 64
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "cosine"


def imagenet_consolidation(experts=("caltech_birds2011", "stanford_dogs", "oxford_flowers102"),
                           proxy: str = "imagenet2012", downstream: str = "oxford_iiit_pet",
                           model: str = "resnet50", temperature: float = 1.0,
                           epochs: int = 10) -> ml_collections.ConfigDict:
  """Representation consolidation at paper scale (the paper's recipe is not
  public: every choice here is [INFERRED] and a config field).

  Runs: ``expert_<data set>``: the ImageNet ``model`` (``workdirs/imagenet/<model>``)
  fine-tuned on each expert task; ``consolidated``: a ``model`` initialised from the ImageNet
  one, one head per teacher (the ImageNet generalist and each expert), KD per head
  (T=``temperature``) on the ``proxy`` images with their labels dropped (``a+b`` for a union),
  judged on the generalist head's ImageNet accuracy and downstream on ``downstream``;
  baselines judged downstream the same way: ``generalist`` (the ImageNet backbone) and each
  expert's backbone (``<expert>_downstream``), and ``kd_<first expert>``, single-head KD
  from that expert alone."""
  generalist_dir = f"{IMAGENET_WORKDIR}/{model}"
  c = base_config()
  c.model = model
  _imagenet_like(c, proxy, unlabeled=True)
  _fine_tune(c, epochs)
  c.eval_batch_size = 256
  c.log_every_steps = 200
  c.checkpoint_every_steps = 2000
  ds = c.downstream
  _imagenet_like(ds, downstream)
  ds.num_epochs = 30
  ds.batch_size = 64
  ds.optimizer.lr = 0.01
  ds.optimizer.weight_decay = 1e-4
  off = dict(downstream=dict(data=dict(name="")))
  names = {e: f"expert_{e}" for e in experts}
  runs = {}
  for e, run in names.items():
    runs[run] = dict(init_from=generalist_dir, data=dict(name=e, unlabeled=False, eval_split="test"),
                     num_epochs=30, **off)
  teachers = {"generalist": dict(model=model, checkpoint=generalist_dir)}
  teachers.update({run: dict(model=model, run=run) for run in names.values()})
  kd = lambda t: dict(loss="kd", teacher=t, temperature=temperature)
  runs["consolidated"] = dict(init_from=generalist_dir, teachers=teachers,
                              student_heads=tuple(teachers), eval_head="generalist",
                              objectives={f"kd_{t}": kd(t) for t in teachers})
  first = names[experts[0]]
  runs[f"kd_{first}"] = dict(init_from=generalist_dir, teachers={first: teachers[first]},
                             student_heads=(first,), eval_head="",
                             objectives={"kd": kd(first)})
  runs["generalist"] = dict(downstream=dict(backbone=generalist_dir))
  for run in names.values():
    runs[f"{run}_downstream"] = dict(downstream=dict(backbone=run))
  c.runs = runs
  return c


CFL_LEARNING_RATES = {  # student: (backbone, fc, CFL block), Adam (the paper's code).
    "resnet34": (1e-4, 1e-3, 5e-4), "resnet50": (2e-5, 2e-4, 2e-4)}


def cub_dogs_amalgamation(student: str = "resnet34") -> ml_collections.ConfigDict:
  """CFL's benchmark (the official code): a ResNet-18 trained on CUB-200 and a
  ResNet-34 trained on Stanford Dogs amalgamated into an ImageNet-initialised ``student``
  whose 320-way classifier covers both (classes 0-199 CUB, 200-319 dogs), trained on the
  union of both train sets without labels: soft-target CE over the concatenated teacher
  logits (T=1) + 10 * CFL (h=128); Adam, weight decay 1e-4, 30 epochs, batch 64, lr x0.1
  after epoch 15, per-group learning rates (backbone / fc / CFL block). Scored on the
  concatenated test sets (320-way) and on each teacher's task. ``kd``: the KD-only baseline.

  The teachers are fine-tuned here from the ImageNet ResNet-18/34 (runs ``teacher_birds``,
  ``teacher_dogs``; [INFERRED] recipe: SGD lr 0.01, cosine, 30 epochs)."""
  if student not in CFL_LEARNING_RATES:
    raise KdJaxError(f"configs/amalgamation/cub_dogs.py: the paper's code has learning rates "
                     f"for {', '.join(CFL_LEARNING_RATES)}, not {student!r}")
  backbone_lr, fc_lr, cfl_lr = CFL_LEARNING_RATES[student]
  c = base_config()
  c.model = student
  _imagenet_like(c, "caltech_birds2011+stanford_dogs", unlabeled=True)
  c.batch_size = 64
  c.num_epochs = 30
  c.optimizer.name = "adam"
  c.optimizer.lr = backbone_lr
  c.optimizer.lr_reference_batch = 64
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_epochs = (15,)
  c.optimizer.decay_factor = 0.1
  c.optimizer.lr_scale = {"student/fc": fc_lr / backbone_lr, "aux/cfl": cfl_lr / backbone_lr}
  c.log_every_steps = 100
  teacher_runs = {"teacher_birds": ("resnet18", "caltech_birds2011"),
                  "teacher_dogs": ("resnet34", "stanford_dogs")}
  runs = {}
  for run, (arch, data) in teacher_runs.items():
    t = base_config()
    _fine_tune(t)
    runs[run] = dict(model=arch, init_from=f"{IMAGENET_WORKDIR}/{arch}",
                     data=dict(name=data, unlabeled=False, eval_split="test"),
                     optimizer=t.optimizer.to_dict())
  teachers = {run: dict(model=arch, run=run) for run, (arch, _) in teacher_runs.items()}
  names = list(teacher_runs)
  tasks = {"birds": tuple(range(200)), "dogs": tuple(range(200, 320))}
  soft = dict(loss="soft_ce", teacher=names, temperature=1.0)
  common = dict(init_from=f"{IMAGENET_WORKDIR}/{student}", teachers=teachers, eval_tasks=tasks)
  runs["cfl"] = dict(**common, objectives={"soft_ce": soft,
                                           "cfl": dict(teacher=names, weight=10.0)})
  runs["kd"] = dict(**common, objectives={"soft_ce": soft})
  c.runs = runs
  return c
