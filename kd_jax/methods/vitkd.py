"""ViTKD (Yang et al., 2022, "ViTKD: Practical guidelines for ViT feature knowledge
distillation"; yzd-v/cls_KD ``ViTKDLoss``): between two ViTs, the student's patch tokens of
the first two blocks mimic the teacher's (through a Linear per layer where the widths
differ), and the teacher's deep tokens (the last block, after the final norm) are generated
from the student's with half of them masked (a learned mask token, then conv3x3 -> ReLU ->
conv3x3 over the patch grid)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.methods.base import FRACTION, NON_NEGATIVE, Context, Method, register
from kd_jax.models import layers, vit


def patch_tokens(tokens: jax.Array) -> jax.Array:
  """[B, T, D] -> the patch tokens [B, N, D], the prefix tokens dropped (the reference drops
  the class token, ``x[:, 1:]``; a distilled ViT's distillation token goes too)."""
  grid = vit.patch_map(tokens)
  return grid.reshape(grid.shape[0], -1, grid.shape[-1])


class ViTKDAdapter(nn.Module):
  """The reference's ``align2`` (one Linear per shallow layer), ``align``, ``mask_token`` and
  ``generation``; PyTorch's initialisation (the mask token zero). Returns the aligned shallow
  tokens and the generated deep tokens, and the teacher's tokens with the mask appended."""

  lam: float

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    del train
    for m in (*s_maps, *t_maps):
      if m.ndim != 3:
        raise ValueError("ViTKD reads a vision transformer's tokens [B, T, D] on both sides")
    *low_s, high_s = [patch_tokens(m) for m in s_maps]
    *low_t, high_t = [patch_tokens(m) for m in t_maps]
    dt = high_t.shape[-1]
    if high_s.shape[-1] != dt:
      low_s = [layers.TorchDense(dt, None, name=f"align2_{i}")(x) for i, x in enumerate(low_s)]
      high_s = layers.TorchDense(dt, None, name="align")(high_s)
    b, n, _ = high_s.shape
    key = self.make_rng("adapter") if self.has_rng("adapter") else jax.random.PRNGKey(0)
    mask = losses.random_token_mask(key, b, n, self.lam)
    mask_token = self.param("mask_token", nn.initializers.zeros, (1, 1, dt))
    x = jnp.where(mask[..., None] > 0, mask_token.astype(high_s.dtype), high_s)
    side = int(round(n ** 0.5))
    x = x.reshape(b, side, side, dt)
    x = layers.TorchConv(dt, (3, 3), padding=1, name="generation_0")(x)
    x = layers.TorchConv(dt, (3, 3), padding=1, name="generation_2")(nn.relu(x))
    return [*low_s, x.reshape(b, n, dt)], [*low_t, high_t, mask]


@register("vitkd")
class ViTKD(Method):
  """The reference's defaults: alpha 3e-5 (mimicking), beta 3e-6 (generation), mask ratio
  lam 0.5; reads blocks 1 and 2 and the final tokens of both ViTs."""
  alpha: float = 3e-5
  beta: float = 3e-6
  lam: float = 0.5
  ranges = {"alpha": NON_NEGATIVE, "beta": NON_NEGATIVE, "lam": FRACTION}
  reads = ("block1", "block2", "tokens")
  feature_kind = "tokens"

  def adapter(self):
    return ViTKDAdapter(self.lam)

  def loss(self, ctx: Context):
    *low_s, high_s = ctx.s_maps
    *low_t, high_t, mask = ctx.t_maps
    return losses.vitkd(low_s, low_t, high_s, high_t, mask, alpha=self.alpha, beta=self.beta,
                        lam=self.lam)
