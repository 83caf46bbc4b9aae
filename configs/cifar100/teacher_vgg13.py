"""CIFAR-100 teacher vgg13 with RepDistiller's recipe (kd_jax.recipes.cifar100_teacher).

  python -m kd_jax.train --config=configs/cifar100/teacher_vgg13.py \
      --workdir=workdirs/cifar100/teacher_vgg13
"""
from kd_jax import recipes


def get_config():
  return recipes.cifar100_teacher("vgg13")
