"""OFA on ImageNet at 224 px: a ResNet-18 from a DeiT-Tiny teacher, OFA's README command and its
configs/imagenet/cnn.yaml (kd_jax/recipes/vit.py: imagenet_ofa).

  python -m kd_jax.train --config=configs/imagenet/ofa.py --workdir=workdirs/imagenet/ofa

The teacher is read from workdirs/imagenet/deit_tiny_patch16_224 (python -m kd_jax.convert
--arch=deit_tiny_patch16_224 --torch=deit_tiny.pth --out=workdirs/imagenet/deit_tiny_patch16_224,
from DeiT's or timm's weights). ImageNet needs its manual download in
<data_dir>/downloads/manual.
"""
from kd_jax.recipes import vit


def get_config():
  return vit.imagenet_ofa()
