"""Representation consolidation with labelled target data, on the embedded digits: the three
digits teachers distilled (KD per head) into a resnet8 on the unlabelled digits *and* the
labelled transposed digits (the target task; CE on its labels), beside consolidation on the
unlabelled digits alone and CE on the target alone; every backbone judged by a linear probe
on the transposed digits, 3 seeds.

  python -m kd_jax.train --config=configs/consolidation/digits_target.py --workdir=/tmp/cons_target
"""
from kd_jax import recipes


def get_config(seeds="3"):
  return recipes.digits_consolidation_with_target(int(seeds))
