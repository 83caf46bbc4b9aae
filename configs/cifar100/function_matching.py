"""Function matching (Beyer et al., CVPR 2022) on CIFAR-100, resnet32x4 -> resnet8x4 by
default: teacher and student read one view (inception crop to 32 px + flip on the host,
mixup p=1 in the step), KL at T=1, no labels; RepDistiller's SGD with a cosine schedule over
1200 epochs (our choice: the paper has no CIFAR recipe; patience is its point).

  python -m kd_jax.train --config=configs/cifar100/function_matching.py --workdir=workdirs/cifar100/fm
  python -m kd_jax.train --config=configs/cifar100/function_matching.py:vgg13-vgg8 ...
  python -m kd_jax.train --config=configs/cifar100/function_matching.py --config.num_epochs=240

The teacher is read from workdirs/cifar100/teacher_<teacher> (train it with
configs/cifar100/teacher_<teacher>.py, or convert RepDistiller's weights there).
"""
from kd_jax import recipes


def get_config(pair=None):
  return recipes.cifar100_function_matching(pair)
