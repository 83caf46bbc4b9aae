"""Downstream evaluation on the embedded transfer task (transposed digits: 10 classes no
digits model has seen): linear probe on frozen pooled features and 30 epochs of fine-tuning.

  python -m kd_jax.evaluate --workdir=<a trained run> --config=configs/downstream/digits_transposed.py
  python -m kd_jax.evaluate --workdir=/tmp/scratch --config=configs/downstream/digits_transposed.py \
      --config.downstream.backbone=random --config.model=resnet8     # the from-scratch baseline
"""
from kd_jax import recipes


def get_config():
  c = recipes.digits_base()
  recipes.digits_downstream(c)
  return c
