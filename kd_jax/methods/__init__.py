"""Distillation methods, one file each (or one per small family): a method's hyperparameters
with the reference's defaults, what it reads, its adapters, state and initialisation phase,
and the lines that call its pure loss in ``kd_jax.losses``. ``base.py`` is the API and the
registry; a method defined outside kd_jax registers the same way (``config.method_modules``).

  logits.py      ce, kd, soft_ce, logit_l2, dkd, dist, nkd, wttm (kd/dkd: logit_stand)
  ctkd.py        ctkd (learnable temperature, gradient reversal)
  fitnet.py      fitnet (ConvReg)          attention.py   at, nst
  relations.py   sp, rkd, pkt, cc          crd.py         crd
  ab.py          ab (init phase)           fsp.py         fsp (init phase)
  ft.py          ft (init phase)           vid.py         vid
  statistics.py  mean_matching, stat_matching, adain, teacher_head (SRRL)
  ama.py         ama (init phase)          cfl.py         cfl (amalgamation)
  function_matching.py  function_matching (one mixed view for teacher and student)
  reviewkd.py    reviewkd (ABF fusion, hierarchical context loss)
  mlkd.py        mlkd (multi-level logits on a weak and a strong view: Method.views)
  deit.py        deit (DeiT's distillation token: a distilled ViT's second head)
  vitkd.py       vitkd (ViT -> ViT: shallow tokens mimicked, masked deep tokens generated)
  ofa.py         ofa (any pair, CNN <-> ViT: every stage projected into the logit space)
"""
from kd_jax.methods import (ab, ama, attention, cfl, crd, ctkd, deit, fitnet, fsp,  # noqa: F401
                            ft, function_matching, logits, mlkd, ofa, relations, reviewkd,
                            statistics, vid, vitkd)
from kd_jax.methods.base import (ALL_ADAPTERS, AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE,
                                 REGISTRY, STUDENT_FEATURES, Context, HostSampler, Method, Outputs,
                                 Phase, Range, TrainSplit, check_ranges, get, import_modules, names,
                                 register, sum_over_layers, transforms_batch)

__all__ = ["ALL_ADAPTERS", "AT_LEAST_ONE", "FRACTION", "NON_NEGATIVE", "POSITIVE", "REGISTRY",
           "STUDENT_FEATURES", "Context", "HostSampler", "Method", "Outputs", "Phase", "Range",
           "TrainSplit", "check_ranges", "get", "import_modules", "names", "register",
           "sum_over_layers", "transforms_batch"]
