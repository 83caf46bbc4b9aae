"""Methods on logits: cross-entropy with the labels, Hinton KD, soft cross-entropy, logit L2,
decoupled KD."""
from __future__ import annotations

from kd_jax import losses
from kd_jax.methods.base import Context, Method, register


@register("ce")
class CE(Method):
  """Cross-entropy with the labels (with a labelled fraction, over the labelled examples)."""
  label_smoothing: float = 0.0
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
  multi_teacher = True

  def loss(self, ctx: Context):
    return losses.kd(ctx.student.logits, ctx.teacher.logits, temperature=self.temperature)


@register("soft_ce")
class SoftCE(Method):
  """Cross-entropy with the teacher's soft targets (CFL)."""
  temperature: float = 1.0
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
  needs_labels = True

  def loss(self, ctx: Context):
    return losses.dkd(ctx.student.logits, ctx.teacher.logits, ctx.batch["label"],
                      alpha=self.alpha, beta=self.beta, temperature=self.temperature,
                      warmup=self.warmup, epoch=ctx.epoch)
