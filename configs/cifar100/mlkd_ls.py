"""MLKD with logit standardization (CE 0.1 on each view + w MLKD at T, its KD terms on
standardized logits; (T, w) per pair from the logit-standardization authors' logs, (2, 9) for
resnet32x4 -> resnet8x4) with their solver for the pair (480 epochs at lr 0.025 for
resnet32x4 -> resnet8x4), resnet32x4 -> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/mlkd_ls.py --workdir=workdirs/cifar100/mlkd_ls
  python -m kd_jax.train --config=configs/cifar100/mlkd_ls.py:vgg13-vgg8 ...   # another pair

Hyperparameters and their sources: kd_jax/recipes/baselines.py. The teacher is read from
workdirs/cifar100/teacher_<teacher>.
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("mlkd_ls", pair)
