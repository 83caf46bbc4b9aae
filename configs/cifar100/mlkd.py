"""MLKD (CE 0.1 on the loader's view and on the strong view + 0.9 MLKD at T 4: its authors'
defaults) with its authors' solver for the pair (resnet32x4 -> resnet8x4: 240 epochs at lr
0.025), resnet32x4 -> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/mlkd.py --workdir=workdirs/cifar100/mlkd
  python -m kd_jax.train --config=configs/cifar100/mlkd.py:vgg13-vgg8 ...   # another pair

The strong view (crop, flip, RandAugment(2) and Cutout) is drawn on the device from the uint8
images (CIFAR's default data.augment_on). Hyperparameters and their sources:
kd_jax/recipes/baselines.py. The teacher is read from workdirs/cifar100/teacher_<teacher>.
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("mlkd", pair)
