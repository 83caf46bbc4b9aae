"""Feature-statistic transfer (Yang, Martinez, Bulat, Tzimiropoulos, arXiv 2003.04289; the
same authors' SRRL code, ICLR 2021). Each method connects the student's last-stage map to
the teacher's channels (``StatConnector``, SRRL's ``transfer_conv``), then:

- ``mean_matching``: the teacher's channel means (SRRL's ``statm_loss``);
- ``stat_matching``: means and standard deviations (our reading of the paper's L2 baseline);
- ``adain``: AdaIN-KD [INFERRED reconstruction, docs/methods.md *What is inferred*]: the teacher's
  map re-normalised with the connected student's statistics, judged by the teacher's own
  remaining layers against its logits (plus ``stat_matching`` at ``stat_weight``);
- ``teacher_head``: SRRL: the connected student map through the teacher's remaining layers
  (pooling + classifier), MSE to the teacher's logits (plus ``statm_loss`` at
  ``mean_weight``, on the same connector as SRRL's code).
"""
from __future__ import annotations

import flax.linen as nn

from kd_jax import losses
from kd_jax.methods.base import NON_NEGATIVE, POSITIVE, Context, Method, register, sum_over_layers
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
  """Channel-mean matching (SRRL's code, ``statm``): the connected student's last-stage
  channel means against the teacher's, MSE."""
  reads = "last_stage"
  feature_kind = "maps"

  def adapter(self):
    return ConnectorAdapter()

  def loss(self, ctx: Context):
    return sum_over_layers(losses.mean_matching, ctx.s_maps, ctx.t_maps)


@register("stat_matching")
class StatMatching(Method):
  """Channel mean and standard deviation matching (Yang et al. 2020, the L2 baseline)
  [INFERRED; docs/methods.md, *What is inferred*]: the connected student's last-stage channel
  statistics against the teacher's, MSE; biased variance unless ``unbiased``."""
  eps: float = 1e-5
  unbiased: bool = False
  ranges = {"eps": NON_NEGATIVE}
  reads = "last_stage"
  feature_kind = "maps"

  def adapter(self):
    return ConnectorAdapter()

  def loss(self, ctx: Context):
    return losses.stat_matching(ctx.s_maps[0], ctx.t_maps[0], eps=self.eps,
                                unbiased=self.unbiased)


@register("adain")
class AdaINKD(Method):
  """``L_AIN + stat_weight * L_stat`` (METHODS.md section E): ``L_AIN`` compares the teacher's
  remaining layers on ``AdaIN(F_T; conn(F_S))`` with the teacher's logits (``kind``: 'mse'
  over B*K, or 'kl', Hinton KD at ``temperature``); gradients reach the student only through
  the connected map's channel statistics."""
  eps: float = 1e-5
  unbiased: bool = False
  kind: str = "mse"
  temperature: float = 1.0
  stat_weight: float = 1.0
  ranges = {"eps": NON_NEGATIVE, "temperature": POSITIVE, "stat_weight": NON_NEGATIVE}
  reads = "last_stage"
  feature_kind = "maps"
  uses_teacher_head = True

  def __post_init__(self):
    super().__post_init__()
    if self.kind not in ("mse", "kl"):
      raise ValueError(f"kind must be 'mse' or 'kl', got {self.kind!r}")

  def adapter(self):
    return ConnectorAdapter()

  def loss(self, ctx: Context):
    f_s, f_t = ctx.s_maps[0], ctx.t_maps[0]
    loss = losses.adain_loss(f_s, f_t, ctx.teacher_head, eps=self.eps, unbiased=self.unbiased,
                             kind=self.kind, temperature=self.temperature,
                             teacher_logits=ctx.teacher.logits)
    if self.stat_weight:
      loss = loss + self.stat_weight * losses.stat_matching(f_s, f_t, eps=self.eps,
                                                             unbiased=self.unbiased)
    return loss


@register("teacher_head")
class TeacherHead(Method):
  """SRRL: ``MSE(head_T(conn(F_S)), logits_T) + mean_weight * statm(conn(F_S), F_T)``, the
  MSE a mean over B*K; ``mean_weight=0`` leaves the head's MSE alone."""
  mean_weight: float = 1.0
  ranges = {"mean_weight": NON_NEGATIVE}
  reads = "last_stage"
  feature_kind = "maps"
  uses_teacher_head = True

  def adapter(self):
    return ConnectorAdapter()

  def loss(self, ctx: Context):
    f_s, f_t = ctx.s_maps[0], ctx.t_maps[0]
    loss = losses.teacher_head_mse(f_s, ctx.teacher.logits, ctx.teacher_head)
    if self.mean_weight:
      loss = loss + self.mean_weight * losses.mean_matching(f_s, f_t)
    return loss
