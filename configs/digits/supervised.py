"""One model trained with cross-entropy on the embedded digits (a teacher, or a scratch student).

  python -m kd_jax.train --config=configs/digits/supervised.py --config.model=resnet20
"""
from kd_jax import recipes


def get_config():
  return recipes.digits_base("resnet8")
