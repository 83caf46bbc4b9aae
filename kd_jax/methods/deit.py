"""DeiT's distillation token (Touvron et al., ICML 2021; facebookresearch/deit ``losses.py``
``DistillationLoss``): a distilled ViT student's second head, on its distillation token
(``logits/dist``), learns from the teacher's output while ``ce`` trains the class head (the
student's training logits). Its inference logits average the two heads.

DeiT's loss ``(1 - alpha) * CE(class head, y) + alpha * distillation(dist head, teacher)`` is
``objectives = {ce: weight 1 - alpha, deit: weight alpha}`` (DeiT's alpha: 0.5).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.methods.base import POSITIVE, Context, Method, register

DIST_HEAD = "logits/dist"  # The feature a distilled ViT gives its distillation head's logits in.


def deit_distillation(dist_logits: jax.Array, teacher_logits: jax.Array, *, hard: bool,
                      tau: float) -> jax.Array:
  """DeiT's distillation term. dist_logits, teacher_logits [B, K].

  hard: ``CE(dist_logits, argmax teacher)``, mean over the batch (ties: the first class).
  soft: ``tau^2 * sum_{i,c} KL(p_T || p_S)_{i,c} / (B * K)``, p = softmax(logits / tau): the
  reference divides the summed KL by the number of logits (its "legacy" reduction), not by
  the batch, so this is ``losses.kd`` / K. The teacher side gets no gradient."""
  teacher_logits = jax.lax.stop_gradient(teacher_logits)
  if hard:
    return losses.cross_entropy(dist_logits, jnp.argmax(teacher_logits, axis=-1))
  return losses.kd(dist_logits, teacher_logits, temperature=tau) / dist_logits.shape[-1]


@register("deit")
class DeiT(Method):
  """distillation_type: hard (the paper's best: the teacher's argmax) or soft (KL at tau);
  DeiT's defaults (``main.py``: ``--distillation-type``, ``--distillation-tau`` 1.0)."""
  distillation_type: str = "hard"
  tau: float = 1.0
  ranges = {"tau": POSITIVE}
  reads = DIST_HEAD
  teacher_reads = "logits"

  def __post_init__(self):
    super().__post_init__()
    if self.distillation_type not in ("hard", "soft"):
      raise ValueError(f"distillation_type must be hard or soft, got {self.distillation_type!r}")

  def loss(self, ctx: Context):
    (dist_logits,), (teacher_logits,) = ctx.s_maps, ctx.t_maps
    return deit_distillation(dist_logits, teacher_logits,
                             hard=self.distillation_type == "hard", tau=self.tau)
