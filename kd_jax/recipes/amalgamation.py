"""Knowledge amalgamation recipes (CFL, Luo et al., IJCAI 2019): heterogeneous experts into one
student over the union of their classes, through a common feature space."""
from __future__ import annotations

import ml_collections

from kd_jax.config import base_config
from kd_jax.errors import KdJaxError
from kd_jax.recipes import imagenet, published
from kd_jax.recipes.digits import DIGITS_TEACHERS, digits_base, teacher_runs, teachers

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
  runs = teacher_runs(names)
  tasks = {n: tuple(DIGITS_TEACHERS[n]["data"]["classes"]) for n in names}
  for seed in range(seeds):
    common = dict(model="resnet8", seed=seed, data=dict(unlabeled=True),
                  teachers=teachers(names), eval_tasks=tasks)
    soft = dict(loss="soft_ce", teacher=names, temperature=1.0)
    runs[f"cfl_seed{seed}"] = dict(**common, optimizer=dict(lr_scale={"adapters/cfl": 0.1}),
                                   objectives={"soft_ce": soft, "cfl": dict(
                                       teacher=names, weight=cfl_weight, hidden=hidden)})
    runs[f"kd_seed{seed}"] = dict(**common, objectives={"soft_ce": soft})
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
  imagenet.imagenet_like(c, "caltech_birds2011+stanford_dogs", unlabeled=True)
  c.batch_size = 64
  c.num_epochs = 30
  c.optimizer.name = "adam"
  c.optimizer.lr = backbone_lr
  c.optimizer.lr_reference_batch = 64
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_epochs = (15,)
  c.optimizer.decay_factor = 0.1
  c.optimizer.lr_scale = {"student/fc": fc_lr / backbone_lr, "adapters/cfl": cfl_lr / backbone_lr}
  c.log_every_steps = 100
  teacher_runs = {"teacher_birds": ("resnet18", "caltech_birds2011"),
                  "teacher_dogs": ("resnet34", "stanford_dogs")}
  runs = {}
  for run, (arch, data) in teacher_runs.items():
    t = base_config()
    imagenet.fine_tune(t)
    runs[run] = dict(model=arch, init_from=f"{imagenet.IMAGENET_WORKDIR}/{arch}",
                     data=dict(name=data, unlabeled=False, eval_split="test"),
                     optimizer=t.optimizer.to_dict())
  teachers = {run: dict(model=arch, run=run) for run, (arch, _) in teacher_runs.items()}
  names = list(teacher_runs)
  tasks = {"birds": tuple(range(200)), "dogs": tuple(range(200, 320))}
  soft = dict(loss="soft_ce", teacher=names, temperature=1.0)
  common = dict(init_from=f"{imagenet.IMAGENET_WORKDIR}/{student}", teachers=teachers, eval_tasks=tasks)
  runs["cfl"] = dict(**common, objectives={"soft_ce": soft,
                                           "cfl": dict(teacher=names, weight=10.0)})
  runs["kd"] = dict(**common, objectives={"soft_ce": soft})
  c.runs = runs
  cfl_readme = published.CFL.get(student, {})
  c.published = tuple([(f"CUB+Dogs -> {student}", run, run, cfl_readme[run])
                       for run in ("kd", "cfl") if run in cfl_readme]
                      + [("teachers", label, run, value)
                         for run, (label, value) in published.CFL_TEACHERS.items()])
  c.published_source = published.CFL_SOURCE
  return c
