"""KD with logit standardization (0.1 CE + w KD at T on z-scored logits; (T, w) per pair from the
authors' logs, (2, 9) for resnet32x4 -> resnet8x4), resnet32x4 -> resnet8x4 by default.

  python -m kd_jax.train --config=configs/cifar100/kd_ls.py --workdir=workdirs/cifar100/kd_ls
  python -m kd_jax.train --config=configs/cifar100/kd_ls.py:vgg13-vgg8 ...   # another pair

Hyperparameters and their sources: kd_jax/recipes/baselines.py. The teacher is read from
workdirs/cifar100/teacher_<teacher> (train it with configs/cifar100/teacher_<teacher>.py,
or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("kd_ls", pair)
