"""CFL's benchmark (its official code): a ResNet-18 trained on CUB-200 and
a ResNet-34 trained on Stanford Dogs amalgamated into an ImageNet-initialised ResNet-34 (or
resnet50: the argument) over the 320 classes of both, on the union of their train sets
without labels; CFL and the KD-only baseline, scored on the concatenated test sets and on
each teacher's task. The paper's code reports 320-way accuracy KD 76.84 -> CFL 77.21
(ResNet-34), 79.65 -> 79.97 (ResNet-50).

Needs ImageNet ResNet-18/34 (and -50) as kd_jax runs in workdirs/imagenet/<model>.

  python -m kd_jax.train --config=configs/amalgamation/cub_dogs.py --workdir=workdirs/cfl_cub_dogs
"""
from kd_jax import recipes


def get_config(student="resnet34"):
  return recipes.cub_dogs_amalgamation(student)
