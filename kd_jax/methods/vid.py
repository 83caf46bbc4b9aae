"""Variational information distillation (Ahn et al., CVPR 2019; RepDistiller ``VIDLoss``):
per stage a regressor predicts the teacher's map as a Gaussian (mean, per-channel variance)
from the student's, trained by its negative log-likelihood."""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from kd_jax import losses
from kd_jax.methods.base import NON_NEGATIVE, POSITIVE, Context, Method, register
from kd_jax.models import layers


class VIDRegressor(nn.Module):
  """One layer's regressor: ``x`` [B, H, W, Cs] (the student map pooled to the teacher's
  size) -> ``(mean [B, H, W, Ct], variance [Ct])``: mean = conv1x1(Cs->mid) -> ReLU ->
  conv1x1(mid->mid) -> ReLU -> conv1x1(mid->Ct), bias-free (mid = Ct in the reference);
  variance = ``softplus(rho) + eps``, ``rho`` initialised to ``log(exp(init_pred_var - eps)
  - 1)``, one per teacher channel."""

  target_channels: int
  init_pred_var: float
  eps: float
  mid_channels: int | None = None

  @nn.compact
  def __call__(self, x):
    mid = self.mid_channels or self.target_channels
    x = nn.relu(layers.TorchConv(mid, (1, 1), use_bias=False)(x))
    x = nn.relu(layers.TorchConv(mid, (1, 1), use_bias=False)(x))
    mean = layers.TorchConv(self.target_channels, (1, 1), use_bias=False)(x)
    rho0 = float(np.log(np.exp(self.init_pred_var - self.eps) - 1.0))
    rho = self.param("log_scale", nn.initializers.constant(rho0), (self.target_channels,))
    return mean, jax.nn.softplus(rho) + self.eps


class VIDAdapter(nn.Module):
  """Per layer: pool to one size, then the regressor: ``[(mean, variance), ...]`` and the
  (pooled) teacher maps."""

  init_pred_var: float
  eps: float

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    preds, targets = [], []
    for i, (s, t) in enumerate(zip(s_maps, t_maps)):
      s, t = losses.vid_match(s, t)
      preds.append(VIDRegressor(t.shape[-1], self.init_pred_var, self.eps,
                                name=f"regressor{i}")(s))
      targets.append(t)
    return preds, targets


@register("vid")
class VID(Method):
  """Variational information distillation (Ahn et al., CVPR 2019; RepDistiller's ``VIDLoss``):
  per stage, a regressor predicts the teacher's map from the student's with a learned
  per-channel variance; the Gaussian negative log-likelihood, summed over the stages."""
  init_pred_var: float = 5.0
  eps: float = 1e-5
  ranges = {"init_pred_var": POSITIVE, "eps": NON_NEGATIVE}

  def __post_init__(self):
    super().__post_init__()
    if self.init_pred_var <= self.eps:  # The variance starts at init_pred_var > its floor eps.
      raise ValueError(f"init_pred_var must be > eps ({self.eps:g}), got {self.init_pred_var!r}")
  reads = "stages"
  feature_kind = "maps"

  def adapter(self):
    return VIDAdapter(self.init_pred_var, self.eps)

  def loss(self, ctx: Context):
    return sum(losses.vid(mean, var, t) for (mean, var), t in zip(ctx.s_maps, ctx.t_maps))
