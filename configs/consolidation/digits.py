"""Representation consolidation on the embedded digits (minutes on a CPU): a generalist
(resnet20, all digits) and two experts (wrn_16_2 on digits 0-4, vgg8 on 5-9) distilled into
one resnet8 with a head per teacher on the unlabelled train images; every backbone judged
on a task none has seen (transposed digits) by linear probe and fine-tuning, 3 seeds.

  python -m kd_jax.train --config=configs/consolidation/digits.py --workdir=/tmp/consolidation
  python -m kd_jax.train --config=configs/consolidation/digits.py:1 ...   # 1 seed
"""
from kd_jax import recipes


def get_config(seeds="3"):
  return recipes.digits_consolidation(int(seeds))
