"""ReviewKD (CE 1 + ReviewKD 1, warm-up 1 epoch, the student's pre-activation stages):
mdistiller's r34_r18/reviewkd.yaml, ResNet-34 -> ResNet-18 at 224 px.

  python -m kd_jax.train --config=configs/imagenet/reviewkd.py --workdir=workdirs/imagenet/reviewkd

The teacher is read from workdirs/imagenet/resnet34 (python -m kd_jax.convert --arch=resnet34
--torch=resnet34.pth --out=workdirs/imagenet/resnet34, or train it with
configs/imagenet/supervised.py). SGD 0.9, lr 0.1 per 256 images, weight decay 1e-4, x0.1 after
epochs 30, 60 and 90 (sources: kd_jax/recipes/baselines.py). ImageNet needs its manual
download in <data_dir>/downloads/manual.
"""
from kd_jax import recipes


def get_config():
  return recipes.imagenet_distill("reviewkd")
