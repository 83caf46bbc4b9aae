"""Feature-statistic transfer (Yang, Martinez, Bulat, Tzimiropoulos, arXiv 2003.04289; the
same authors' SRRL code): the connected student's last-stage map matches the teacher's
channel means (``mean_matching``, SRRL's ``statm_loss``) or means and standard deviations
(``stat_matching``, our reading of the paper's L2 baseline; README, *What is inferred*)."""
from __future__ import annotations

import flax.linen as nn

from kd_jax import losses
from kd_jax.methods.base import Context, Method, register, sum_over_layers
from kd_jax.models import layers


class StatConnector(nn.Module):
  """SRRL ``transfer_conv``: conv1x1(Cs -> Ct, no bias; N(0, sqrt(2/(k*k*Ct)))) -> BN
  (weight 1, bias 0) -> ReLU. [B, H, W, Cs] -> [B, H, W, Ct]."""

  out_channels: int

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = layers.conv(self.out_channels, 1, padding=0)(x)
    return nn.relu(layers.batch_norm(train)(x))


class ConnectorAdapter(nn.Module):
  """The connector from the student's channels to the teacher's."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    return ([StatConnector(t_maps[0].shape[-1], name="connector")(s_maps[0], train)],
            list(t_maps[:1]))


@register("mean_matching")
class MeanMatching(Method):
  reads = "last_stage"

  def adapter(self):
    return ConnectorAdapter()

  def loss(self, ctx: Context):
    return sum_over_layers(losses.mean_matching, ctx.s_maps, ctx.t_maps)


@register("stat_matching")
class StatMatching(Method):
  eps: float = 1e-5
  unbiased: bool = False
  reads = "last_stage"

  def adapter(self):
    return ConnectorAdapter()

  def loss(self, ctx: Context):
    return losses.stat_matching(ctx.s_maps[0], ctx.t_maps[0], eps=self.eps,
                                unbiased=self.unbiased)
