"""A method between a CNN and a ViT on the embedded digits, in minutes on a CPU: a job that trains
the teacher (run ``teacher``), then the student (run ``<method>``). The argument is the method
(deit, deit_soft, ofa, vitkd, kd, fitnet, crd, ... any RepDistiller method or logit baseline whose features
a ViT has), optionally with a pair; the default pair is resnet20 -> vit_micro_patch2_8.

  python -m kd_jax.train --config=configs/digits/vit.py:deit --workdir=/tmp/digits_vit
  python -m kd_jax.train --config=configs/digits/vit.py:kd,vit_micro_patch2_8-resnet8 ...
"""
from kd_jax.recipes import vit


def get_config(arg="deit"):
  method, _, pair = arg.partition(",")
  return vit.digits_vit(method, pair or None)
