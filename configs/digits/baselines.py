"""The logit baselines of 2022-2024 (DIST, KD and DKD with logit standardization, CTKD on KD and
DKD, NKD, WTTM) beside scratch, KD and CRD on the embedded digits: a resnet20 teacher, then
resnet8 students with each method's CIFAR-100 settings, 3 seeds (the job prints mean +- std).

  python -m kd_jax.train --config=configs/digits/baselines.py --workdir=/tmp/baselines
  python -m kd_jax.train --config=configs/digits/baselines.py:0.1 ...   # 10% of the labels

With a label fraction below 1 the methods that read every example's label (DKD+LS, CTKD on
DKD, NKD) are left out.
"""
from kd_jax import recipes


def get_config(fraction="1.0"):
  return recipes.digits_baselines(float(fraction))
