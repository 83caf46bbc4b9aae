"""DeiT on ImageNet at 224 px: a DeiT-Ti (or DeiT-S) student with a distillation token, from a
ResNet-50 teacher, DeiT's recipe less what kd_jax lacks (kd_jax/recipes/vit.py lists it).

  python -m kd_jax.train --config=configs/imagenet/deit.py --workdir=workdirs/imagenet/deit_tiny
  python -m kd_jax.train --config=configs/imagenet/deit.py:deit,small ...
  python -m kd_jax.train --config=configs/imagenet/deit.py:student,tiny ...   # no teacher

The argument is <method>[,<size>[,<teacher>]]: method deit | deit_soft | student (CE alone),
size tiny | small. The teacher is read from workdirs/imagenet/<teacher> (python -m
kd_jax.convert --arch=resnet50 --torch=resnet50.pth --out=workdirs/imagenet/resnet50).
ImageNet needs its manual download in <data_dir>/downloads/manual.
"""
from kd_jax.recipes import vit


def get_config(arg="deit"):
  parts = arg.split(",")
  return vit.imagenet_deit(*parts)
