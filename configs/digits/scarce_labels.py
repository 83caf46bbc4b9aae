"""Distillation with scarce labels on the embedded digits: a resnet20 teacher trained on all
train labels; resnet8 students from scratch, with KD, with CRD (negatives of other classes,
the reference's exact mode) and with CRD's uniform negatives, each seeing every train
image but only 10% of the labels, over 3 seeds (the job prints mean +- std per method).

  python -m kd_jax.train --config=configs/digits/scarce_labels.py --workdir=/tmp/scarce
  python -m kd_jax.train --config=configs/digits/scarce_labels.py:0.05 ...   # 5% of labels
"""
from kd_jax import recipes


def get_config(fraction="0.1"):
  return recipes.digits_scarce_labels(float(fraction))
