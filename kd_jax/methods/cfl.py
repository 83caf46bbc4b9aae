"""Knowledge amalgamation by common feature learning (CFL; Luo et al., IJCAI 2019; the
official VainF/CommonFeatureLearning code): the student's and each teacher's last maps are
mapped into one common space by adapters and a shared extractor; MMD pulls the student's
common feature to each teacher's, and a decoder per teacher reconstructs the teacher's map
from its common feature."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from kd_jax import losses
from kd_jax.methods.base import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Context, Method, register
from kd_jax.models import layers


class _ResBlock(nn.Module):
  """CFL's residual block without BatchNorm: conv3x3 -> ReLU -> conv3x3, plus the input (a
  1x1 conv of it when the width changes), then ReLU. Convolutions without bias."""

  features: int

  @nn.compact
  def __call__(self, x):
    conv = lambda k, name: layers.TorchConv(self.features, (k, k), padding=k // 2,
                                            use_bias=False, name=name)
    out = conv(3, "conv2")(nn.relu(conv(3, "conv1")(x)))
    if x.shape[-1] != self.features:
      x = conv(1, "downsample")(x)
    return nn.relu(out + x)


class CFLBlock(nn.Module):
  """CFL's common-feature block (``CFL_ConvBlock``): per teacher an adapter (1x1 conv to
  2h, ReLU) and a decoder (3x3 conv to the teacher's width, ReLU, 1x1 conv), the student's
  adapter, and the extractor shared by every side (residual blocks 2h->h, h->h, h->h).
  PyTorch's default initialisation (the reference never calls its ``init_weights``).

  ``__call__(f_s [B, H, W, C_s], f_t [one map per teacher]) -> (h_s, [h_t_i], [f_hat_i])``.
  """

  hidden: int
  num_blocks: int

  @nn.compact
  def __call__(self, f_s: jax.Array, f_t: Sequence[jax.Array]):
    h = self.hidden
    blocks = [_ResBlock(h, name=f"extractor{i}") for i in range(self.num_blocks)]

    def extract(x):
      for block in blocks:
        x = block(x)
      return x

    def align(x, name):
      return nn.relu(layers.TorchConv(2 * h, (1, 1), use_bias=False, name=name)(x))

    h_s = extract(align(f_s, "align_s"))
    h_t, f_hat = [], []
    for i, t in enumerate(f_t):
      common = extract(align(t, f"align_t{i}"))
      c = t.shape[-1]
      dec = layers.TorchConv(c, (3, 3), padding=1, use_bias=False, name=f"dec{i}_conv1")(common)
      dec = layers.TorchConv(c, (1, 1), use_bias=False, name=f"dec{i}_conv2")(nn.relu(dec))
      h_t.append(common)
      f_hat.append(dec)
    return h_s, h_t, f_hat


class CFLAdapter(nn.Module):
  """Returns ``([h_s], [(h_t, reconstruction, f_t) per teacher])``."""

  hidden: int
  num_blocks: int

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    h_s, h_t, f_hat = CFLBlock(self.hidden, self.num_blocks, name="cfl")(s_maps[0], t_maps)
    return [h_s], list(zip(h_t, f_hat, t_maps))


@register("cfl")
class CFL(Method):
  """Common-space width h, extractor blocks, reconstruction weight, MMD kernel widths."""
  hidden: int = 128
  num_blocks: int = 3
  recon_weight: float = 1.0
  sigmas: tuple = (0.001, 0.01, 0.05, 0.1, 0.2, 1.0, 2.0)
  ranges = {"hidden": AT_LEAST_ONE, "num_blocks": NON_NEGATIVE, "recon_weight": NON_NEGATIVE,
            "sigmas": POSITIVE}
  multi_teacher = True
  reads = "last_stage"
  feature_kind = "maps"

  def adapter(self):
    return CFLAdapter(self.hidden, self.num_blocks)

  def loss(self, ctx: Context):
    (h_s,), per_teacher = ctx.s_maps, ctx.t_maps
    return losses.cfl(h_s, [h for h, _, _ in per_teacher], [r for _, r, _ in per_teacher],
                      [f for _, _, f in per_teacher], recon_weight=self.recon_weight,
                      sigmas=tuple(self.sigmas))
