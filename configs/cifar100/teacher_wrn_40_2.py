"""CIFAR-100 teacher wrn_40_2 with RepDistiller's recipe (kd_jax.recipes.cifar100_teacher).

  python -m kd_jax.train --config=configs/cifar100/teacher_wrn_40_2.py \
      --workdir=workdirs/cifar100/teacher_wrn_40_2
"""
from kd_jax import recipes


def get_config():
  return recipes.cifar100_teacher("wrn_40_2")
