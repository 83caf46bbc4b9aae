"""FT (30-epoch paraphraser phase, then CE + 200 factor transfer): RepDistiller's CIFAR-100 student recipe, resnet32x4 -> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/ft.py --workdir=workdirs/cifar100/ft
  python -m kd_jax.train --config=configs/cifar100/ft.py:vgg13-vgg8 ...   # another pair

The teacher is read from workdirs/cifar100/teacher_<teacher> (train it with
configs/cifar100/teacher_<teacher>.py, or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("ft", pair)
