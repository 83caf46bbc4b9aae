"""Methods on logits: cross-entropy with the labels, Hinton KD, soft cross-entropy, logit L2,
decoupled KD, and the logit baselines of 2022-2024: DIST, NKD, WTTM (CTKD: ``ctkd.py``).
``logit_stand`` on KD and DKD is logit standardization (Sun et al., CVPR 2024): both sides
z-scored (``losses.logit_standardize``) before the loss, as the authors' mdistiller fork."""
from __future__ import annotations

from kd_jax import losses
from kd_jax.methods.base import FRACTION, NON_NEGATIVE, POSITIVE, Context, Method, register


def standardized_logits(logit_stand: bool, ctx: Context):
  """The student's and the teacher's logits, z-scored when ``logit_stand``."""
  zs, zt = ctx.student.logits, ctx.teacher.logits
  if logit_stand:
    return losses.logit_standardize(zs), losses.logit_standardize(zt)
  return zs, zt


@register("ce")
class CE(Method):
  """Cross-entropy with the labels (with a labelled fraction, over the labelled examples)."""
  label_smoothing: float = 0.0
  ranges = {"label_smoothing": FRACTION}
  needs_teacher = False
  needs_labels = True
  partial_labels = True

  def loss(self, ctx: Context):
    return losses.cross_entropy(ctx.student.logits, ctx.batch["label"], self.label_smoothing,
                                mask=ctx.batch.get("label_mask"))


@register("kd")
class KD(Method):
  """Hinton KD (RepDistiller ``DistillKL``) at temperature T; several teachers: their logits
  concatenated, in the configured order."""
  temperature: float = 4.0
  logit_stand: bool = False
  ranges = {"temperature": POSITIVE}
  multi_teacher = True

  def loss(self, ctx: Context):
    zs, zt = standardized_logits(self.logit_stand, ctx)
    return losses.kd(zs, zt, temperature=self.temperature)


@register("soft_ce")
class SoftCE(Method):
  """Cross-entropy with the teacher's soft targets (CFL)."""
  temperature: float = 1.0
  ranges = {"temperature": POSITIVE}
  multi_teacher = True

  def loss(self, ctx: Context):
    return losses.soft_cross_entropy(ctx.student.logits, ctx.teacher.logits,
                                     temperature=self.temperature)


@register("logit_l2")
class LogitL2(Method):
  """Squared error of logits (representation consolidation's L2 ablation)."""

  def loss(self, ctx: Context):
    return losses.logit_l2(ctx.student.logits, ctx.teacher.logits)


@register("dkd")
class DKD(Method):
  """Decoupled KD (mdistiller's CIFAR-100 defaults: alpha 1, beta 8, T 4, 20 warm-up epochs)."""
  alpha: float = 1.0
  beta: float = 8.0
  temperature: float = 4.0
  warmup: float = 20.0
  logit_stand: bool = False
  ranges = {"alpha": NON_NEGATIVE, "beta": NON_NEGATIVE, "temperature": POSITIVE,
            "warmup": NON_NEGATIVE}
  needs_labels = True

  def loss(self, ctx: Context):
    zs, zt = standardized_logits(self.logit_stand, ctx)
    return losses.dkd(zs, zt, ctx.batch["label"],
                      alpha=self.alpha, beta=self.beta, temperature=self.temperature,
                      warmup=self.warmup, epoch=ctx.epoch)


@register("dist")
class DIST(Method):
  """DIST (Huang et al., NeurIPS 2022): inter- and intra-class Pearson relations of the
  softened outputs. Defaults: the authors' ``DIST`` class (beta 1, gamma 1, tau 1: their
  ImageNet setting; CIFAR-100 uses tau 4, ``configs/cifar100/dist.py``)."""
  beta: float = 1.0
  gamma: float = 1.0
  temperature: float = 1.0
  ranges = {"beta": NON_NEGATIVE, "gamma": NON_NEGATIVE, "temperature": POSITIVE}

  def loss(self, ctx: Context):
    return losses.dist(ctx.student.logits, ctx.teacher.logits, beta=self.beta,
                       gamma=self.gamma, temperature=self.temperature)


@register("nkd")
class NKD(Method):
  """Normalized KD (Yang et al., ICCV 2023): the target term at T = 1 and the normalized
  non-target term at T. Defaults: the authors' ``NKDLoss`` (T 1, gamma 1.5: their ImageNet
  setting; their CIFAR-100 config: T 3, gamma 3.5)."""
  temperature: float = 1.0
  gamma: float = 1.5
  ranges = {"temperature": POSITIVE, "gamma": NON_NEGATIVE}
  needs_labels = True

  def loss(self, ctx: Context):
    return losses.nkd(ctx.student.logits, ctx.teacher.logits, ctx.batch["label"],
                      temperature=self.temperature, gamma=self.gamma)


@register("wttm")
class WTTM(Method):
  """Weighted transformed teacher matching (Zheng and Yang, ICLR 2024): KL to the
  power-transformed teacher ``p_T^gamma`` (normalized), weighted per example by
  ``sum_c p_T^gamma``. Default: the authors' ``--ttm_l`` (1)."""
  gamma: float = 1.0
  ranges = {"gamma": NON_NEGATIVE}

  def loss(self, ctx: Context):
    return losses.wttm(ctx.student.logits, ctx.teacher.logits, gamma=self.gamma)
