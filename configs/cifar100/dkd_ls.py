"""DKD with logit standardization (CE + DKD at alpha w, beta b*w, T per pair from the authors' logs; 9,
72, 2 for resnet32x4 -> resnet8x4), resnet32x4 -> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/dkd_ls.py --workdir=workdirs/cifar100/dkd_ls
  python -m kd_jax.train --config=configs/cifar100/dkd_ls.py:vgg13-vgg8 ...   # another pair

Hyperparameters and their sources: kd_jax/recipes/baselines.py. The teacher is read from
workdirs/cifar100/teacher_<teacher> (train it with configs/cifar100/teacher_<teacher>.py,
or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("dkd_ls", pair)
