"""FitNet (Romero et al., ICLR 2015; RepDistiller ``HintLoss`` + ``ConvReg``): the student's
hint map regressed onto the teacher's, MSE."""
from __future__ import annotations

import flax.linen as nn

from kd_jax import losses
from kd_jax.methods.base import Context, Method, register, sum_over_layers
from kd_jax.models import layers, vit


class ConvReg(nn.Module):
  """RepDistiller's ``ConvReg`` (FitNet regressor; AB connector with ``use_relu=False``).

  [B, sH, sW, Cs] -> [B, tH, tW, out_channels], chosen by the heights: ``sH == 2 tH``:
  conv3x3 stride 2 pad 1; ``2 sH == tH``: ConvTranspose 4x4 stride 2 pad 1; ``sH >= tH``:
  conv with kernel ``(1 + sH - tH, 1 + sW - tW)``; then BN, then ReLU (if ``use_relu``).
  """

  out_channels: int
  out_size: tuple[int, int]
  use_relu: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True):
    s_h, s_w = x.shape[1:3]
    t_h, t_w = self.out_size
    if s_h == 2 * t_h:
      x = layers.TorchConv(self.out_channels, (3, 3), stride=2, padding=1)(x)
    elif 2 * s_h == t_h:
      x = layers.TorchConvTranspose(self.out_channels, 4, 2, 1)(x)
    elif s_h >= t_h:
      x = layers.TorchConv(self.out_channels, (1 + s_h - t_h, 1 + s_w - t_w))(x)
    else:
      raise ValueError(f"ConvReg cannot map a student map of size {s_h}x{s_w} to a "
                       f"teacher map of size {t_h}x{t_w}")
    x = layers.batch_norm(train)(x)
    return nn.relu(x) if self.use_relu else x


class FitNetAdapter(nn.Module):
  """``ConvReg`` from the student's hint map to the teacher's shape. A ViT side's tokens are
  read as the map of its patches (``vit.patch_map``: the class/distillation tokens dropped)."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    s, t = vit.patch_map(s_maps[0]), vit.patch_map(t_maps[0])
    return [ConvReg(t.shape[-1], t.shape[1:3], name="regressor")(s, train)], [t]


@register("fitnet")
class FitNet(Method):
  """Hint layer 2 (``stage2``), as RepDistiller's ``--hint_layer 2``; on a ViT, the patch
  tokens of its ``stage2`` block as a map."""
  reads = "stage2"

  def adapter(self):
    return FitNetAdapter()

  def loss(self, ctx: Context):
    return sum_over_layers(losses.fitnet, ctx.s_maps, ctx.t_maps)
