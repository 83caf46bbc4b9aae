"""CTKD with logit standardization (0.1 CE + 9 KD at a learned temperature on z-scored logits): the
logit-standardization authors' CTKD script, resnet32x4 -> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/ctkd_ls.py --workdir=workdirs/cifar100/ctkd_ls
  python -m kd_jax.train --config=configs/cifar100/ctkd_ls.py:vgg13-vgg8 ...   # another pair

Hyperparameters and their sources: kd_jax/recipes/baselines.py. The teacher is read from
workdirs/cifar100/teacher_<teacher> (train it with configs/cifar100/teacher_<teacher>.py,
or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("ctkd_ls", pair)
