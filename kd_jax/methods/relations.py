"""Relations between the examples of a batch (RepDistiller ``distiller_zoo/``): SP, RKD, PKT
on the features, CC on linear embeddings of them."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.losses.common import flatten, float32
from kd_jax.methods.base import (AT_LEAST_ONE, NON_NEGATIVE, Context, Method, register,
                                 sum_over_layers)
from kd_jax.models import layers


@register("sp")
class SP(Method):
  """Similarity-preserving KD on the last stage's map."""
  reads = "last_stage"

  def loss(self, ctx: Context):
    return sum_over_layers(losses.similarity_preserving, ctx.s_maps, ctx.t_maps)


@register("rkd")
class RKD(Method):
  """Relational KD on the pooled features: distance and angle terms."""
  distance_weight: float = 25.0
  angle_weight: float = 50.0
  ranges = {"distance_weight": NON_NEGATIVE, "angle_weight": NON_NEGATIVE}
  reads = "pooled"

  def loss(self, ctx: Context):
    return sum_over_layers(losses.rkd, ctx.s_maps, ctx.t_maps,
                           distance_weight=self.distance_weight, angle_weight=self.angle_weight)


@register("pkt")
class PKT(Method):
  """Probabilistic knowledge transfer on the pooled features."""
  eps: float = 1e-7
  ranges = {"eps": NON_NEGATIVE}
  reads = "pooled"

  def loss(self, ctx: Context):
    return sum_over_layers(losses.pkt, ctx.s_maps, ctx.t_maps, eps=self.eps)


class LinearEmbed(nn.Module):
  """``torch.nn.Linear(D, features)`` on flattened features, PyTorch's initialisation
  (RepDistiller ``LinearEmbed``, used by CC): [B, ...] -> [B, features]."""

  features: int

  @nn.compact
  def __call__(self, x):
    return layers.TorchDense(self.features, name="linear")(flatten(x))


class EmbedPair(nn.Module):
  """One embedding per side (``embed_s``, ``embed_t``), both trained; ``normalize``: unit
  rows (CRD's ``Embed``)."""

  features: int
  normalize: bool = False

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    def embed(x, name):
      z = LinearEmbed(self.features, name=name)(x)
      if self.normalize:  # x / ||x||_2 without epsilon, in float32, as the reference.
        z = float32(z)
        z = z / jnp.sqrt(jnp.sum(jnp.square(z), axis=1, keepdims=True))
      return z
    return [embed(s_maps[0], "embed_s")], [embed(t_maps[0], "embed_t")]


@register("cc")
class CC(Method):
  """Correlation congruence on 128-d linear embeddings of the pooled features."""
  feat_dim: int = 128
  ranges = {"feat_dim": AT_LEAST_ONE}
  reads = "pooled"

  def adapter(self):
    return EmbedPair(self.feat_dim)

  def loss(self, ctx: Context):
    return sum_over_layers(losses.correlation_congruence, ctx.s_maps, ctx.t_maps)
