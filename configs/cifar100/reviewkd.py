"""ReviewKD (CE + 5 ReviewKD, 20 warm-up epochs: mdistiller's reviewkd.yaml) on RepDistiller's
recipe (mdistiller's solver for this pair: the same), resnet32x4 -> resnet8x4 by default (other
pairs: the same values [INFERRED]).

  python -m kd_jax.train --config=configs/cifar100/reviewkd.py --workdir=workdirs/cifar100/reviewkd
  python -m kd_jax.train --config=configs/cifar100/reviewkd.py:vgg13-vgg8 ...   # another pair

Hyperparameters and their sources: kd_jax/recipes/baselines.py. The teacher is read from
workdirs/cifar100/teacher_<teacher> (train it with configs/cifar100/teacher_<teacher>.py,
or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("reviewkd", pair)
