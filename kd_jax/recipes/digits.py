"""The embedded digits' recipes: the scaled-down twin of RepDistiller's benchmark, the scarce-label
job, and the three teachers (a generalist and two experts) of the multi-teacher recipes."""
from __future__ import annotations

import ml_collections

from kd_jax.config import base_config
from kd_jax.recipes import baselines
from kd_jax.recipes.repdistiller import learning_rate, method_objectives, parse_pair

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
  objectives = method_objectives(method)
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
  on every train label (run ``teacher``), then, per seed, four resnet8 students that see
  every train image but only ``fraction`` of the labels (the same labelled subset for all):
  ``scratch_seed<k>`` (CE on the labelled examples), ``kd_seed<k>`` (0.1 CE + 0.9 KD),
  ``crd_seed<k>`` (CE + 0.8 CRD, 1,024 negatives of other classes: ``mode='exact'``, drawn
  from the labelled examples) and ``crd_uniform_seed<k>`` (the same, negatives uniform over
  every train image). The job prints mean +- std per method."""
  c = digits_distill("kd")
  teacher = c.runs["teacher"].to_dict()
  students = {"scratch": {"ce": dict(weight=1.0)}, "kd": method_objectives("kd"),
              "crd": method_objectives("crd"), "crd_uniform": method_objectives("crd")}
  students["crd"]["crd"]["nce_k"] = 1024
  students["crd_uniform"]["crd"].update(nce_k=1024, mode="uniform")
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


# The baselines of 2021-2024 (``baselines``) on the digits; those that read the label of
# every example (DKD, NKD) cannot run where labels are scarce.
DIGITS_BASELINES = ("dist", "kd_ls", "dkd_ls", "ctkd", "ctkd_dkd", "ctkd_ls", "nkd", "wttm",
                    "mlkd", "mlkd_ls", "reviewkd")
_NEED_EVERY_LABEL = ("dkd_ls", "ctkd_dkd", "nkd")


def digits_baselines(fraction: float = 1.0, seeds: int = 3) -> ml_collections.ConfigDict:
  """The logit baselines beside scratch, KD and CRD on the embedded digits: a resnet20
  teacher on every train label (run ``teacher``), then per seed resnet8 students
  (``<method>_seed<k>``) with each method's CIFAR-100 settings for resnet32x4 -> resnet8x4
  (``baselines.objectives``; MLKD's images augmented on the device, where its strong view is
  drawn, and its learning rate scaled as its authors' is to RepDistiller's: 0.025 / 0.05; the
  epochs are the job's), on ``fraction`` of the train labels (every image). Below 1,
  the methods that read every example's label (DKD+LS, CTKD on DKD, NKD) are left out.
  The job prints mean +- std per method."""
  c = digits_distill("kd")
  teacher = c.runs["teacher"].to_dict()
  names = ["scratch", "kd", "crd"] + [m for m in DIGITS_BASELINES
                                      if fraction >= 1.0 or m not in _NEED_EVERY_LABEL]
  runs = {"teacher": teacher}
  for seed in range(seeds):
    for name in names:
      objectives = {"ce": dict(weight=1.0)} if name == "scratch" else method_objectives(name)
      if "crd" in objectives:
        objectives["crd"]["nce_k"] = 1024
      run = dict(model="resnet8", seed=seed, objectives=objectives,
                 teachers={"teacher": dict(model=teacher["model"], run="teacher")}
                 if name != "scratch" else {})
      own = baselines.solver(name, "resnet32x4-resnet8x4")
      if own:  # The authors' learning rate relative to RepDistiller's (MLKD: 0.025 / 0.05).
        run["optimizer"] = dict(lr=c.optimizer.lr * own["lr"] / learning_rate("resnet8x4"))
      data = {"augment_on": "device"} if name.startswith("mlkd") else {}  # Its strong view.
      if fraction < 1.0:
        data["labeled_fraction"] = fraction
      if data:
        run["data"] = data
      runs[f"{name}_seed{seed}"] = run
  c.runs = runs
  return c


def digits_feature_statistics(seeds: int = 3) -> ml_collections.ConfigDict:
  """Feature-statistic transfer on the embedded digits: a resnet20 teacher (run
  ``teacher``), then, per seed, resnet8 students from scratch (CE), with KD and with each
  statistic method (``mean_matching``, ``stat_matching``, ``adain``, ``srrl``: ``METHODS``),
  every one on all labels; the job prints mean +- std per method."""
  c = digits_distill("kd")
  teacher = c.runs["teacher"].to_dict()
  runs = {"teacher": teacher}
  for seed in range(seeds):
    runs[f"scratch_seed{seed}"] = dict(model="resnet8", seed=seed,
                                       objectives={"ce": dict(weight=1.0)}, teachers={})
    for name in ("kd", "mean_matching", "stat_matching", "adain", "srrl"):
      runs[f"{name}_seed{seed}"] = dict(
          model="resnet8", seed=seed, objectives=method_objectives(name),
          teachers={"teacher": dict(model=teacher["model"], run="teacher")})
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


def teacher_runs(names) -> dict[str, dict]:
  no_downstream = dict(downstream=dict(data=dict(name="")))
  return {n: {**DIGITS_TEACHERS[n], **no_downstream} for n in names}


def teachers(names) -> dict[str, dict]:
  return {n: dict(model=DIGITS_TEACHERS[n]["model"], run=n) for n in names}
