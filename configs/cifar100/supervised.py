"""Any zoo model trained on CIFAR-100 with cross-entropy and RepDistiller's recipe (240 epochs,
batch 64, SGD 0.9, wd 5e-4, lr 0.05 -- 0.01 for MobileNetV2/ShuffleV1/ShuffleV2 -- x0.1
after epochs 150, 180, 210): a teacher, or the scratch baseline of a student.

  python -m kd_jax.train --config=configs/cifar100/supervised.py:resnet8x4 --workdir=...
"""
from kd_jax import recipes


def get_config(model=None):
  return recipes.cifar100_teacher(model or "resnet32x4")
