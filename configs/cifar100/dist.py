"""DIST (CE + 2 DIST, beta = gamma = 1, tau 4): DIST_KD's CIFAR-100 recipe, resnet32x4 -> resnet8x4 by
default.

  python -m kd_jax.train --config=configs/cifar100/dist.py --workdir=workdirs/cifar100/dist
  python -m kd_jax.train --config=configs/cifar100/dist.py:vgg13-vgg8 ...   # another pair

Hyperparameters and their sources: kd_jax/recipes/baselines.py. The teacher is read from
workdirs/cifar100/teacher_<teacher> (train it with configs/cifar100/teacher_<teacher>.py,
or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("dist", pair)
