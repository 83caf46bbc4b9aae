"""Activation-boundary transfer (Heo et al., AAAI 2019; RepDistiller ``ABLoss`` +
``Connector``): as in the reference it acts only through its 30-epoch initialisation phase,
which trains the connectors and the student's feature layers on the pre-ReLU maps."""
from __future__ import annotations

import flax.linen as nn

from kd_jax import losses
from kd_jax.methods.base import (ALL_ADAPTERS, NON_NEGATIVE, STUDENT_FEATURES, Context, Method,
                                 Phase, register)
from kd_jax.methods.fitnet import ConvReg


class ABConnector(nn.Module):
  """One layer's connector: identity when the student map already has the teacher's channels
  and height, else ``ConvReg(use_relu=False)``."""

  out_channels: int
  out_size: tuple[int, int]

  @nn.compact
  def __call__(self, x, train: bool = True):
    if x.shape[-1] == self.out_channels and x.shape[1] == self.out_size[0]:
      return x
    return ConvReg(self.out_channels, self.out_size, use_relu=False)(x, train)


class ABAdapter(nn.Module):
  """One connector per layer pair (RepDistiller zips the lists)."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    out = [ABConnector(t.shape[-1], t.shape[1:3], name=f"connector{i}")(s, train)
           for i, (s, t) in enumerate(zip(s_maps, t_maps))]
    return out, list(t_maps[:len(out)])


@register("ab")
class AB(Method):
  """Activation boundaries (Heo et al., AAAI 2019; RepDistiller's ``ABLoss``): the student's
  pre-ReLU stage maps, through a connector, pushed to the teacher's side of each neuron's
  activation boundary with a squared hinge at ``margin``. Transfers in its initialisation
  phase only (RepDistiller's ``-b 1`` stage), as the reference."""
  margin: float = 1.0
  ranges = {"margin": NON_NEGATIVE}
  reads = "preact_stages"
  feature_kind = "maps"
  phase = Phase(loss="activation_boundaries", trains=(ALL_ADAPTERS, STUDENT_FEATURES),
                in_main=False)

  def adapter(self):
    return ABAdapter()

  def loss(self, ctx: Context):
    return losses.activation_boundaries(list(ctx.s_maps), list(ctx.t_maps), margin=self.margin)
