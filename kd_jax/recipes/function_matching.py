"""Function matching (Beyer et al., CVPR 2022; big_vision's ``configs/proj/distill``): the
student learns the teacher's function on one aggressively augmented view that both read
(inception crop + flip on the host, mixup p=1.0 in the step), KL at T=1, no labels, for
long. ImageNet follows big_vision's ``bit_i1k.py``; CIFAR-100 and digits have no published
recipe and keep their own optimisers (our choice, written below)."""
from __future__ import annotations

import ml_collections

from kd_jax.config import base_config
from kd_jax.recipes import imagenet
from kd_jax.recipes.digits import digits_distill
from kd_jax.recipes.repdistiller import cifar100_distill, method_objectives

# big_vision: mixup=dict(p=1.0, n=2), distance='kl', distance_kw=dict(t=1.0).
OBJECTIVES = {"function_matching": dict(weight=1.0, temperature=1.0, mixup_p=1.0, mixup_n=2)}


def function_matching(c: ml_collections.ConfigDict) -> None:
  """Makes ``c`` (a config or a run) function matching: the objective, and the host's
  inception crop + flip (``data.train_augment='inception'``) at the data's image size."""
  c.objectives = {k: dict(v) for k, v in OBJECTIVES.items()}
  c.data.train_augment = "inception"


def cifar100_function_matching(pair: str | None = None, epochs: int = 1200
                               ) -> ml_collections.ConfigDict:
  """resnet32x4 -> resnet8x4 by default (any RepDistiller pair): RepDistiller's optimiser
  (SGD 0.9, lr 0.05 per 64 images, or 0.01 for MobileNet/ShuffleNet students, wd 5e-4),
  a cosine schedule over ``epochs`` (5x RepDistiller's 240 by default: patience), inception
  crop to 32 px + flip, mixup p=1, KL at T=1 alone."""
  c = cifar100_distill("kd", pair)
  function_matching(c)
  c.num_epochs = epochs
  c.optimizer.schedule = "cosine"
  return c


def imagenet_function_matching(epochs: int = 1200) -> ml_collections.ConfigDict:
  """resnet50 (``workdirs/imagenet/resnet50``) -> resnet18 on ImageNet at 224 px, after
  big_vision's ``bit_i1k.py``: batch 4096, Adam with decoupled weight decay, lr 0.03 per 4096
  images (scaled with the batch), decay 0.01 (optax's convention, multiplied by the learning
  rate: big_vision's wd 3e-4 at lr 0.03; on every parameter, big_vision's on kernels only),
  gradients clipped to norm 1, 5,000 warm-up steps (16.3 epochs of 98% of ImageNet at 4096),
  cosine, ``epochs`` (big_vision's "good middle-ground": 1200). Labels are read only to
  evaluate."""
  c = base_config()
  c.model = "resnet18"
  imagenet.imagenet_like(c, "imagenet2012")
  c.teachers = {"teacher": dict(model="resnet50",
                                checkpoint=f"{imagenet.IMAGENET_WORKDIR}/resnet50")}
  function_matching(c)
  c.batch_size = 4096
  c.eval_batch_size = 1024
  c.num_epochs = epochs
  c.optimizer.name = "adamw"
  c.optimizer.lr = 0.03
  c.optimizer.lr_reference_batch = 4096
  c.optimizer.weight_decay = 0.01
  c.optimizer.clip_norm = 1.0
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_epochs = 5000 * 4096 / (0.98 * 1_281_167)
  c.log_every_steps = 200
  c.checkpoint_every_steps = 2000
  return c


def digits_function_matching(seeds: int = 3, long_epochs: int = 150
                             ) -> ml_collections.ConfigDict:
  """The embedded digits: a resnet20 teacher (run ``teacher``), then per seed resnet8
  students with KD (0.1 CE + 0.9 KD at T=4, the digits recipe: 30 epochs, SGD 0.05 cosine)
  and with function matching (inception crop + flip to 8 px, mixup p=1, KL at T=1, no
  labels), each for 30 epochs and for ``long_epochs``; the job prints mean +- std per
  group (``kd``, ``fm``, ``kd_long``, ``fm_long``)."""
  c = digits_distill("kd")
  teacher = c.runs["teacher"].to_dict()
  reads = {"teacher": dict(model=teacher["model"], run="teacher")}
  runs = {"teacher": teacher}
  for seed in range(seeds):
    for suffix, epochs in (("", 30), ("_long", long_epochs)):
      runs[f"kd{suffix}_seed{seed}"] = dict(model="resnet8", seed=seed, num_epochs=epochs,
                                            teachers=reads, objectives=method_objectives("kd"))
      runs[f"fm{suffix}_seed{seed}"] = dict(model="resnet8", seed=seed, num_epochs=epochs,
                                            teachers=reads,
                                            objectives={k: dict(v) for k, v in OBJECTIVES.items()},
                                            data=dict(train_augment="inception"))
  c.runs = runs
  return c
