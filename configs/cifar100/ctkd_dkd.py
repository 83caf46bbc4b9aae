"""CTKD on DKD (CE + DKD, alpha 1, beta 2, at a learned temperature): CTKD's CIFAR script, resnet32x4
-> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/ctkd_dkd.py --workdir=workdirs/cifar100/ctkd_dkd
  python -m kd_jax.train --config=configs/cifar100/ctkd_dkd.py:vgg13-vgg8 ...   # another pair

Hyperparameters and their sources: kd_jax/recipes/baselines.py. The teacher is read from
workdirs/cifar100/teacher_<teacher> (train it with configs/cifar100/teacher_<teacher>.py,
or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("ctkd_dkd", pair)
