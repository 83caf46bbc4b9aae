"""AB (30-epoch activation-boundary initialisation phase, then CE): RepDistiller's CIFAR-100 student recipe, resnet32x4 -> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/ab.py --workdir=workdirs/cifar100/ab
  python -m kd_jax.train --config=configs/cifar100/ab.py:vgg13-vgg8 ...   # another pair

The teacher is read from workdirs/cifar100/teacher_<teacher> (train it with
configs/cifar100/teacher_<teacher>.py, or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("ab", pair)
