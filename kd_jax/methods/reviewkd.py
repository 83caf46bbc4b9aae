"""ReviewKD (Chen et al., "Distilling Knowledge via Knowledge Review", CVPR 2021; as
mdistiller's ``ReviewKD.py``): the student's levels (its stages and its pooled feature) are
fused from the deepest down by attention-based fusion (ABF) modules, and each fused map is
matched to the teacher's pre-activation map of that level by the hierarchical context loss
(``losses.hcl``), summed over the levels, times ``min(epoch / warmup, 1)`` (epochs from 1)."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kd_jax import losses
from kd_jax.methods.base import (AT_LEAST_ONE, NON_NEGATIVE, Context, Method, register,
                                 sum_over_layers)
from kd_jax.models import layers

# ``nn.init.kaiming_uniform_(w, a=1)``: U(-sqrt(3 / fan_in), sqrt(3 / fan_in)).
_kaiming_uniform_a1 = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def nearest_resize(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """``F.interpolate(mode="nearest")`` on NHWC: [B, H, W, C] -> [B, oh, ow, C], output
  ``i`` reading input ``floor(i * H / oh)`` (float32 scale, as PyTorch)."""
  h, w = x.shape[1:3]
  if (h, w) == tuple(out_hw):
    return x

  def index(size, out):
    scale = np.float32(size) / np.float32(out)
    return np.minimum(np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int32),
                      size - 1)

  return x[:, index(h, out_hw[0])][:, :, index(w, out_hw[1])]


class ABF(nn.Module):
  """mdistiller's ``ABF``: ``x1 = BN(conv1x1(x))``; with ``fuse``, ``y`` (the deeper level's
  output) resized to x's size and mixed in by a 2-channel sigmoid attention,
  ``x1 * a0 + y * a1``; x1 resized to ``out_hw`` (the teacher's size) if it differs; returns
  ``(BN(conv3x3(x1)), x1)``. NHWC."""
  mid_channels: int
  out_channels: int
  fuse: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, y, out_hw: tuple[int, int], train: bool):
    x = layers.conv(self.mid_channels, 1, padding=0, dtype=self.dtype,
                    kernel_init=_kaiming_uniform_a1, name="conv1")(x)
    x = layers.batch_norm(train, self.dtype, name="bn1")(x)
    if self.fuse:
      y = nearest_resize(y, x.shape[1:3])
      z = nn.sigmoid(layers.TorchConv(2, (1, 1), name="att_conv")(
          jnp.concatenate([x, y], -1).astype(self.dtype)))
      x = x * z[..., 0:1] + y * z[..., 1:2]
    if x.shape[2] != out_hw[1]:  # The reference compares widths only.
      x = nearest_resize(x, out_hw)
    out = layers.conv(self.out_channels, 3, padding=1, dtype=self.dtype,
                      kernel_init=_kaiming_uniform_a1, name="conv2")(x)
    return layers.batch_norm(train, self.dtype, name="bn2")(out), x


def _as_map(f: jax.Array) -> jax.Array:
  """A pooled feature [B, C] as a 1 x 1 map [B, 1, 1, C]; maps unchanged."""
  return f[:, None, None, :] if f.ndim == 2 else f


class ReviewAdapter(nn.Module):
  """The ABF chain. s_maps / t_maps: one map per level, shallowest first, the pooled feature
  last (e.g. stage1..3 and pooled); ``abf<i>`` serves level i, the pooled level's without
  fusion, its middle width ``min(max_mid_channels, pooled channels)``. Returns the fused
  maps (each shaped as the teacher's map of its level) and the teacher's maps."""
  max_mid_channels: int = 512
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, s_maps: Sequence[jax.Array], t_maps: Sequence[jax.Array], train: bool):
    s_maps, t_maps = [_as_map(f) for f in s_maps], [_as_map(f) for f in t_maps]
    if len(s_maps) != len(t_maps):
      raise ValueError(f"reviewkd pairs the student's and the teacher's levels one to one; "
                       f"it reads {len(s_maps)} student and {len(t_maps)} teacher maps")
    mid = min(self.max_mid_channels, s_maps[-1].shape[-1])
    last = len(s_maps) - 1
    results, residual = [None] * len(s_maps), None
    for i in range(last, -1, -1):
      results[i], residual = ABF(mid, t_maps[i].shape[-1], i < last, self.dtype, name=f"abf{i}")(
          s_maps[i], residual, t_maps[i].shape[1:3], train)
    return results, t_maps


@register("reviewkd")
class ReviewKD(Method):
  """Knowledge review, mdistiller's CIFAR-100 defaults: the student's stages (after their
  ReLU) and pooled feature against the teacher's pre-activation stages and pooled feature,
  20 warm-up epochs (weight 5 in the recipes). mdistiller's ImageNet recipe reads the
  student's pre-activation stages (``student_feature=("preact_stages", "pooled")``) and
  warms up for 1 epoch."""
  warmup: float = 20.0
  max_mid_channels: int = 512
  ranges = {"warmup": NON_NEGATIVE, "max_mid_channels": AT_LEAST_ONE}
  reads = ("stages", "pooled")
  feature_kind = "maps"
  teacher_reads = ("preact_stages", "pooled")

  def adapter(self):
    return ReviewAdapter(self.max_mid_channels)

  def loss(self, ctx: Context):
    loss = sum_over_layers(losses.hcl, ctx.s_maps, ctx.t_maps)
    if ctx.epoch is None:
      return loss
    return loss * jnp.minimum(jnp.asarray(ctx.epoch, jnp.result_type(float)) / self.warmup, 1.0)
