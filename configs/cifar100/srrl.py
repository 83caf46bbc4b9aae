"""SRRL (Yang et al., ICLR 2021; the same authors' code) with RepDistiller's CIFAR-100
student recipe, resnet32x4 -> resnet8x4 by default: CE + 1 * (the connected student
last-stage map through the teacher's pooling + classifier, MSE to its logits, + channel-mean
matching on the same connector).

  python -m kd_jax.train --config=configs/cifar100/srrl.py --workdir=workdirs/cifar100/srrl
  python -m kd_jax.train --config=configs/cifar100/srrl.py:wrn_40_2-ShuffleV1 ...

The teacher is read from workdirs/cifar100/teacher_<teacher> (train it with
configs/cifar100/teacher_<teacher>.py, or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_distill("srrl", pair)
