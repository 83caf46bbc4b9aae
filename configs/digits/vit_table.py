"""CNN <-> ViT on the embedded digits, 3 seeds, mean +- std per method: a resnet20 and a
vit_micro_patch2_8 teacher, then ViT students from the CNN (scratch, KD, DeiT's distillation
token, OFA) and resnet8 students from the ViT (scratch, KD, OFA). The argument lists the
methods (default kd+deit+ofa) and, after a comma, the number of seeds.

  python -m kd_jax.train --config=configs/digits/vit_table.py --workdir=/tmp/digits_vit_table
  python -m kd_jax.train --config=configs/digits/vit_table.py:kd+deit+fitnet,5 ...
"""
from kd_jax.recipes import vit


def get_config(arg="kd+deit+ofa"):
  methods, _, seeds = arg.partition(",")
  return vit.digits_vit_table(int(seeds or 3), tuple(methods.split("+")))
