"""Representation consolidation recipes: several teachers (a generalist and task experts) into
one student with a head per teacher, on unlabelled proxy data, judged downstream."""
from __future__ import annotations

import ml_collections

from kd_jax.config import base_config
from kd_jax.recipes import imagenet
from kd_jax.recipes.digits import (DIGITS_TEACHERS, digits_base, digits_downstream, teacher_runs,
                                  teachers)

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
  runs = teacher_runs(names)
  kd = lambda t: dict(loss="kd", teacher=t, temperature=temperature)
  for seed in range(seeds):
    proxy = dict(unlabeled=True)
    runs[f"consolidated_seed{seed}"] = dict(
        model="resnet8", seed=seed, data=proxy, teachers=teachers(names),
        student_heads=tuple(names), eval_head="generalist",
        objectives={f"kd_{t}": kd(t) for t in names})
    runs[f"kd_generalist_seed{seed}"] = dict(
        model="resnet8", seed=seed, data=proxy, teachers=teachers(["generalist"]),
        objectives={"kd": kd("generalist")})
    for t in names:
      runs[f"{t}_seed{seed}"] = dict(model=DIGITS_TEACHERS[t]["model"], seed=seed,
                                     downstream=dict(backbone=t))
    runs[f"scratch_seed{seed}"] = dict(model="resnet8", seed=seed,
                                       downstream=dict(backbone="random"))
  c.runs = runs
  return c


def digits_consolidation_with_target(seeds: int = 3, temperature: float = 1.0
                                     ) -> ml_collections.ConfigDict:
  """Consolidation that also sees the labelled target task, on the embedded digits.

  Runs: the three digits teachers; then per seed: ``consolidated_seed<k>`` (as in
  ``digits_consolidation``: KD per head on the unlabelled digits alone);
  ``consolidated_target_seed<k>``, the same student and heads trained on the union of the
  unlabelled digits and the *labelled* transposed digits' train split (the target task):
  KD per head on every image, plus CE (weight 1) of the student's own 10-way classifier on
  the labelled part, evaluated with that classifier on the target's test split; and
  ``target_ce_seed<k>``, a resnet8 trained with CE on the labelled target alone (what the
  labels give without teachers). Every backbone is then judged by a linear probe on the
  transposed digits (the target task)."""
  c = digits_base()
  digits_downstream(c)
  c.downstream.protocols = ("linear_probe",)
  names = list(DIGITS_TEACHERS)
  runs = teacher_runs(names)
  kd = lambda t: {f"kd_{t}": dict(loss="kd", teacher=t, temperature=temperature)}
  target = "sklearn_digits_transposed"
  for seed in range(seeds):
    heads = dict(model="resnet8", seed=seed, teachers=teachers(names), student_heads=tuple(names))
    runs[f"consolidated_seed{seed}"] = dict(
        heads, data=dict(unlabeled=True), eval_head="generalist",
        objectives={k: v for t in names for k, v in kd(t).items()})
    runs[f"consolidated_target_seed{seed}"] = dict(
        heads, data=dict(name=f"sklearn_digits+{target}", unlabeled_parts=("sklearn_digits",)),
        eval_head="", objectives={"ce": dict(weight=1.0),
                                  **{k: v for t in names for k, v in kd(t).items()}})
    runs[f"target_ce_seed{seed}"] = dict(model="resnet8", seed=seed, data=dict(name=target),
                                         objectives={"ce": dict(weight=1.0)}, teachers={})
  c.runs = runs
  return c


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
  generalist_dir = f"{imagenet.IMAGENET_WORKDIR}/{model}"
  c = base_config()
  c.model = model
  imagenet.imagenet_like(c, proxy, unlabeled=True)
  imagenet.fine_tune(c, epochs)
  c.eval_batch_size = 256
  c.log_every_steps = 200
  c.checkpoint_every_steps = 2000
  ds = c.downstream
  imagenet.imagenet_like(ds, downstream)
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
