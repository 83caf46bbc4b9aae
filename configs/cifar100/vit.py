"""A method between a CNN and a ViT on CIFAR-100: resnet32x4 -> vit_tiny_patch4_32 (DeiT-Ti's
widths on 4x4 patches) by default, or vit_tiny_patch4_32-resnet8x4 (a CNN student from a ViT
teacher). A ViT student trains with the ViT solver (kd_jax/recipes/vit.py), a CNN student with
RepDistiller's recipe.

  python -m kd_jax.train --config=configs/cifar100/vit.py:deit --workdir=workdirs/cifar100/deit
  python -m kd_jax.train --config=configs/cifar100/vit.py:kd,vit_tiny_patch4_32-resnet8x4 ...

The teacher is read from workdirs/cifar100/teacher_<teacher> (configs/cifar100/teacher_*.py).
"""
from kd_jax.recipes import vit


def get_config(arg="deit"):
  method, _, pair = arg.partition(",")
  return vit.cifar100_vit(method, pair or None)
