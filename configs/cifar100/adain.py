"""AdaIN-KD [inferred reconstruction of Yang et al. 2020, METHODS.md E] with RepDistiller's
CIFAR-100 student recipe, resnet32x4 -> resnet8x4 by default: CE + 1 * (the teacher's
remaining layers on its last-stage map re-normalised with the connected student's channel
statistics, MSE to its logits, + mean/std matching).

  python -m kd_jax.train --config=configs/cifar100/adain.py --workdir=workdirs/cifar100/adain
  python -m kd_jax.train --config=configs/cifar100/adain.py:vgg13-vgg8 ...   # another pair

The teacher is read from workdirs/cifar100/teacher_<teacher> (train it with
configs/cifar100/teacher_<teacher>.py, or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("adain", pair)
