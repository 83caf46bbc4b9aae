"""Paper-scale data and fine-tuning shared by the consolidation and amalgamation recipes."""
from __future__ import annotations

import ml_collections

# ImageNet models are kd_jax runs: trained with configs/imagenet/supervised.py, or converted
# from torchvision weights (python -m kd_jax.convert --arch=resnet50 --torch=resnet50.pth
# --out=workdirs/imagenet/resnet50).
IMAGENET_WORKDIR = "workdirs/imagenet"
FINE_GRAINED_CLASSES = {"caltech_birds2011": 200, "stanford_dogs": 120, "oxford_flowers102": 102,
                        "oxford_iiit_pet": 37, "cars196": 196}
EVAL_SPLIT = {"imagenet2012": "validation"}  # Every other data set here: test.


def imagenet_like(c: ml_collections.ConfigDict, name: str, unlabeled: bool = False) -> None:
  """Sets ``c.data`` (``c``: a config or its downstream group) to ``name`` at 224 px with
  ImageNet's preparation (the data sets' presets), not cached in memory."""
  c.data.name = name
  c.data.train_split = "train"
  c.data.eval_split = "+".join(EVAL_SPLIT.get(n, "test") for n in name.split("+"))
  c.data.image_size = 224
  c.data.unlabeled = unlabeled
  c.data.cache = False


def resnet_solver(c: ml_collections.ConfigDict, batch_size: int, num_epochs: int,
                  warmup_epochs: float = 0.0) -> None:
  """torchvision's ImageNet ResNet solver, as the distillation papers' ImageNet commands use it:
  SGD lr 0.1 per ``batch_size`` images, momentum 0.9, weight decay 1e-4, x0.1 after epochs
  30, 60 and 90 (after ``warmup_epochs`` of linear warm-up)."""
  c.batch_size = batch_size
  c.eval_batch_size = batch_size
  c.num_epochs = num_epochs
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.1
  c.optimizer.lr_reference_batch = batch_size
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_epochs = (30, 60, 90)
  c.optimizer.decay_factor = 0.1
  c.optimizer.warmup_epochs = warmup_epochs
  c.log_every_steps = 500
  c.checkpoint_every_steps = 2000


def fine_tune(c: ml_collections.ConfigDict, epochs: int = 30) -> None:
  """[INFERRED] fine-tuning of an ImageNet backbone on a fine-grained task: SGD lr 0.01 per
  64 images, cosine, weight decay 1e-4."""
  c.batch_size = 64
  c.num_epochs = epochs
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01
  c.optimizer.lr_reference_batch = 64
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "cosine"
