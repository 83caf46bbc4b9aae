"""Function matching (Beyer et al., CVPR 2022) against KD on the embedded digits: a resnet20
teacher, then resnet8 students with KD (0.1 CE + 0.9 KD, T=4) and with function matching
(one inception-cropped, mixed-up view for both networks, KL at T=1, no labels), for 30
epochs and for 150, over 3 seeds; the job prints mean +- std per group.

  python -m kd_jax.train --config=configs/digits/function_matching.py --workdir=/tmp/fm
  python -m kd_jax.train --config=configs/digits/function_matching.py:3,300 ...  # seeds, long epochs
"""
from kd_jax import recipes


def get_config(arg="3,150"):
  seeds, _, epochs = arg.partition(",")
  return recipes.digits_function_matching(int(seeds), int(epochs or 150))
