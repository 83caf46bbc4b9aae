"""KD with logit standardization (CE + 9 KD at T 2 on z-scored logits): the authors' ImageNet command,
ResNet-34 -> ResNet-18 at 224 px.

  python -m kd_jax.train --config=configs/imagenet/kd_ls.py --workdir=workdirs/imagenet/kd_ls

The teacher is read from workdirs/imagenet/resnet34 (python -m kd_jax.convert --arch=resnet34
--torch=resnet34.pth --out=workdirs/imagenet/resnet34, or train it with
configs/imagenet/supervised.py). SGD 0.9, lr 0.1 per 256 images, weight decay 1e-4, x0.1 after
epochs 30, 60 and 90 (sources: kd_jax/recipes/baselines.py). ImageNet needs its manual
download in <data_dir>/downloads/manual.
"""
from kd_jax import recipes


def get_config():
  return recipes.imagenet_distill("kd_ls")
