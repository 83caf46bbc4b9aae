"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017) and neuron selectivity transfer
(Huang & Wang, 2017), summed over the stages as RepDistiller does."""
from __future__ import annotations

from kd_jax import losses
from kd_jax.methods.base import POSITIVE, Context, Method, register, sum_over_layers


@register("at")
class AT(Method):
  """Attention maps ``mean_c f^p`` of stage1..3."""
  p: float = 2.0
  ranges = {"p": POSITIVE}
  reads = "stages"
  feature_kind = "maps"

  def loss(self, ctx: Context):
    return sum_over_layers(losses.attention_transfer, ctx.s_maps, ctx.t_maps, p=self.p)


@register("nst")
class NST(Method):
  """Polynomial-kernel MMD of the channels' spatial vectors, stage1..3."""
  reads = "stages"
  feature_kind = "maps"

  def loss(self, ctx: Context):
    return sum_over_layers(losses.neuron_selectivity_transfer, ctx.s_maps, ctx.t_maps)
