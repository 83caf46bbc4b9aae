"""CIFAR-100 teacher resnet56 with RepDistiller's recipe (kd_jax.recipes.cifar100_teacher).

  python -m kd_jax.train --config=configs/cifar100/teacher_resnet56.py \
      --workdir=workdirs/cifar100/teacher_resnet56
"""
from kd_jax import recipes


def get_config():
  return recipes.cifar100_teacher("resnet56")
