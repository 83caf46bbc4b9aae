"""CIFAR-100 teacher vit_tiny_patch4_32 from scratch with the ViT solver
(kd_jax.recipes.vit.cifar100_vit_teacher: AdamW, 300 epochs, label smoothing 0.1).

  python -m kd_jax.train --config=configs/cifar100/teacher_vit_tiny_patch4_32.py \
      --workdir=workdirs/cifar100/teacher_vit_tiny_patch4_32
"""
from kd_jax.recipes import vit


def get_config():
  return vit.cifar100_vit_teacher("vit_tiny_patch4_32")
