"""Feature-statistic transfer on the embedded digits: a resnet20 teacher, then resnet8
students from scratch, with KD, channel-mean matching (SRRL's statm), mean+std matching, AdaIN-KD
[inferred reconstruction] and SRRL (the teacher's head judging the connected student map),
over 3 seeds; the job prints mean +- std per method.

  python -m kd_jax.train --config=configs/digits/feature_statistics.py --workdir=/tmp/stats
  python -m kd_jax.train --config=configs/digits/feature_statistics.py:5 ...   # 5 seeds
"""
from kd_jax import recipes


def get_config(seeds="3"):
  return recipes.digits_feature_statistics(int(seeds))
