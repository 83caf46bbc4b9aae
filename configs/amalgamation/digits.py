"""Knowledge amalgamation (common feature learning) on the embedded digits: two experts of
different architectures (wrn_16_2 on digits 0-4, vgg8 on 5-9) into one resnet8 over all 10
classes, without labels; CFL and its KD-only baseline, 3 seeds, each scored on the 10-way
test set and on each expert's task beside the expert.

  python -m kd_jax.train --config=configs/amalgamation/digits.py --workdir=/tmp/amalgamation
"""
from kd_jax import recipes


def get_config(seeds="3"):
  return recipes.digits_amalgamation(int(seeds))
