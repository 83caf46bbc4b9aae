"""Activation map adaptation (Wu et al., 2020; arXiv 2010.13500) [INFERRED: only the abstract
is known; docs/methods.md, *What is inferred*].

An adaptive module ``A`` stands in for the teacher's last stage: it maps the teacher's map
*before* that stage to the shape of the student's last-stage map. In a first phase ``A``
(with a 1x1 ``lift`` to the teacher's pooled width) is trained through the rest of the
frozen teacher (global average pooling, then the teacher's own classifier) with
cross-entropy, optionally plus an L2 pull of the pooled lifted map to the teacher's pooled
feature, so that the adapted teacher keeps its accuracy; the student is untouched. Then the
student mimics ``A``'s map (the hint) FitNet-style while ``A`` stays frozen. Its 10 epochs
are our choice.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax

from kd_jax import losses, models
from kd_jax.methods.base import NON_NEGATIVE, Context, Method, Phase, register
from kd_jax.methods.fitnet import ConvReg
from kd_jax.models import layers


class AdaptiveModule(nn.Module):
  """Two conv-BN-ReLU layers from the teacher's map before its last stage to the student's
  last-stage shape: ``ConvReg`` (3x3 stride 2 / transposed / valid conv, by the heights)
  to ``out_channels``, then 3x3 conv, BN, ReLU. [B, tH, tW, Ct] -> [B, sH, sW, Cs]."""

  out_channels: int
  out_size: tuple[int, int]

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = ConvReg(self.out_channels, self.out_size, name="conv1")(x, train)
    x = layers.TorchConv(self.out_channels, (3, 3), padding=1, name="conv2")(x)
    return nn.relu(layers.batch_norm(train)(x))


class Lift(nn.Module):
  """1x1 conv, BN, ReLU: the hint's channels to the teacher's pooled width."""

  features: int

  @nn.compact
  def __call__(self, x, train: bool = True):
    return nn.relu(layers.batch_norm(train)(layers.TorchConv(self.features, (1, 1))(x)))


class AMAAdapter(nn.Module):
  """t_maps: ``[teacher map before the last stage, teacher pooled]``; s_maps: ``[student's
  last-stage map]``. Main phase (module frozen, eval mode): ``([s], [hint])``. Phase:
  ``([lifted hint], [teacher pooled])``, in training mode."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool, phase: bool = False):
    s, (t_before, t_pooled) = s_maps[0], t_maps
    adapter = AdaptiveModule(s.shape[-1], s.shape[1:3], name="adapter")
    lift = Lift(t_pooled.shape[-1], name="lift")
    hint = adapter(t_before, train=phase)
    lifted = lift(hint, train=phase)  # Unused in the main phase (XLA drops it).
    if phase:
      return [lifted], [t_pooled]
    return [s], [hint]


def teacher_classifier(variables: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
  """``(kernel [D, C], bias [C])`` of a zoo model's final Linear layer."""
  params = variables["params"]
  name = next(k for k in params if models.is_classifier(k))
  dense = params[name].get("Dense_0", params[name])  # TorchDense wraps a Dense; a ViT's is bare.
  return dense["kernel"], dense["bias"]


@register("ama")
class AMA(Method):
  """Activation map adaptation (Wu et al. 2020) [INFERRED from the abstract; docs/methods.md,
  *What is inferred*]: an adaptive module maps the teacher's map before its last stage to the
  student's last-stage shape, trained first (its phase) through the frozen teacher's
  classifier, then frozen; the student's last stage mimics its map (FitNet's MSE)."""
  phase_l2: float = 0.0  # Weight of the phase's L2 pull of the adapted teacher.
  ranges = {"phase_l2": NON_NEGATIVE}
  needs_labels = True
  partial_labels = True
  reads = "last_stage"
  feature_kind = "maps"
  teacher_reads = ("before_last_stage", "pooled")
  phase = Phase(loss="adapted_teacher_loss", trains=("adapter", "lift"), frozen_after=True,
                epochs=10)

  def adapter(self):
    return AMAAdapter()

  def loss(self, ctx: Context):
    return losses.fitnet(ctx.s_maps[0], ctx.t_maps[0])

  def phase_loss(self, ctx: Context):
    (variables,) = ctx.teacher_params.values()
    kernel, bias = teacher_classifier(variables)
    return losses.adapted_teacher_loss(ctx.s_maps[0], ctx.t_maps[0], ctx.batch["label"], kernel,
                                       bias, l2_weight=self.phase_l2,
                                       mask=ctx.batch.get("label_mask"))
