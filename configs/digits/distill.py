"""Any RepDistiller method on the embedded digits, in minutes on a CPU: a job that trains the
teacher (run ``teacher``), then the student (run ``<method>``). The argument is the method
(kd, fitnet, at, sp, cc, vid, rkd, pkt, ab, ft, fsp, nst, crd, crd_kd), optionally with a
pair; methods that share a workdir share the teacher.

  python -m kd_jax.train --config=configs/digits/distill.py:crd --workdir=/tmp/digits
  python -m kd_jax.train --config=configs/digits/distill.py:at,resnet32-resnet8 --workdir=...
"""
from kd_jax import recipes


def get_config(arg="kd"):
  method, _, pair = arg.partition(",")
  return recipes.digits_distill(method, pair or None)
