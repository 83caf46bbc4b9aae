"""Knowledge amalgamation by common feature learning (CFL; Luo et al., IJCAI 2019; the
official VainF/CommonFeatureLearning code): several teachers of different architectures and
tasks, one student over the union of their classes.

Adapters map the student's and each teacher's last feature map into one common space
through a shared extractor; MMD pulls the student's common feature towards each
teacher's; a decoder per teacher must reconstruct the teacher's map from its common
feature, which keeps the common space faithful (not collapsed).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax.losses.common import flatten, float32, l2_normalize, match_spatial
from kd_jax.losses.features import TorchConv

MMD_SIGMAS = (0.001, 0.01, 0.05, 0.1, 0.2, 1.0, 2.0)


def _sq_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """[n, m] squared Euclidean distances, clamped at 1e-12 (as the reference)."""
  d = (jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * a @ b.T)
  return jnp.maximum(d, 1e-12)


def mmd2(x: jax.Array, y: jax.Array, sigmas: Sequence[float] = MMD_SIGMAS,
         normalized: bool = True) -> jax.Array:
  """Biased squared MMD between two batches (CFL's ``calc_mmd``).

  x [B, ...], y [B', ...] are flattened to rows (and l2-normalised per row when
  ``normalized``); ``K(D) = sum_sigma exp(-D / (2 sigma^2))`` over squared distances;
  ``MMD^2 = relu(mean K(D_xx) + mean K(D_yy) - 2 mean K(D_xy))``, diagonals included.
  Gradients reach both sides. 0 for identical batches.
  """
  x, y = float32(flatten(x)), float32(flatten(y))
  if normalized:
    x, y = l2_normalize(x), l2_normalize(y)

  def kernel_mean(d):
    return sum(jnp.mean(jnp.exp(-d / (2.0 * s * s))) for s in sigmas)

  value = (kernel_mean(_sq_distances(x, x)) + kernel_mean(_sq_distances(y, y))
           - 2.0 * kernel_mean(_sq_distances(x, y)))
  return jax.nn.relu(value)


def reconstruction(f_hat: jax.Array, f_t: jax.Array) -> jax.Array:
  """``F.mse_loss(f_hat, f_t)``: mean over every element; the teacher side is constant."""
  f_hat, f_t = float32(f_hat, jax.lax.stop_gradient(f_t))
  return jnp.mean(jnp.square(f_hat - f_t))


def cfl(h_s: jax.Array, h_t: Sequence[jax.Array], f_hat: Sequence[jax.Array],
        f_t: Sequence[jax.Array], recon_weight: float = 1.0,
        sigmas: Sequence[float] = MMD_SIGMAS) -> jax.Array:
  """CFL's common-feature loss ``sum_i MMD^2(h_s, h_t_i) + recon_weight * sum_i
  mse(f_hat_i, f_t_i)`` (``CFLoss``; ``beta`` = recon_weight, 1 in the paper's code).

  h_s: the student's common feature [B, H, W, h]; h_t, f_hat, f_t: one per teacher (its
  common feature, its reconstruction of its map, its map). Where a teacher's map has
  another spatial size than the student's (the reference's are all 7x7), the larger common
  feature is average-pooled to the smaller size before the MMD."""
  mmd = sum(mmd2(*match_spatial(h_s, h), sigmas) for h in h_t)
  recon = sum(reconstruction(r, f) for r, f in zip(f_hat, f_t))
  return mmd + recon_weight * recon


class _ResBlock(nn.Module):
  """CFL's residual block without BatchNorm: conv3x3 -> ReLU -> conv3x3, plus the input (a
  1x1 conv of it when the width changes), then ReLU. Convolutions without bias."""

  features: int

  @nn.compact
  def __call__(self, x):
    out = TorchConv(self.features, (3, 3), padding=1, use_bias=False, name="conv1")(x)
    out = TorchConv(self.features, (3, 3), padding=1, use_bias=False, name="conv2")(nn.relu(out))
    if x.shape[-1] != self.features:
      x = TorchConv(self.features, (1, 1), use_bias=False, name="downsample")(x)
    return nn.relu(out + x)


class CFLBlock(nn.Module):
  """CFL's common-feature block (``CFL_ConvBlock``; hidden width ``h`` = 128 in the paper's
  code): per teacher an adapter (1x1 conv to 2h, ReLU) and a decoder (3x3 conv to the
  teacher's width, ReLU, 1x1 conv), the student's adapter, and the extractor shared by
  every side (residual blocks 2h->h, h->h, h->h). PyTorch's default initialisation (the
  reference never calls its ``init_weights``).

  ``__call__(f_s [B, H, W, C_s], f_t [one map per teacher]) -> (h_s, [h_t_i], [f_hat_i])``.
  """

  hidden: int = 128
  num_blocks: int = 3

  @nn.compact
  def __call__(self, f_s: jax.Array, f_t: Sequence[jax.Array]):
    h = self.hidden
    blocks = [_ResBlock(h, name=f"extractor{i}") for i in range(self.num_blocks)]

    def extract(x):
      for block in blocks:
        x = block(x)
      return x

    def align(x, name):
      return nn.relu(TorchConv(2 * h, (1, 1), use_bias=False, name=name)(x))

    h_s = extract(align(f_s, "align_s"))
    h_t, f_hat = [], []
    for i, t in enumerate(f_t):
      common = extract(align(t, f"align_t{i}"))
      c = t.shape[-1]
      dec = TorchConv(c, (3, 3), padding=1, use_bias=False, name=f"dec{i}_conv1")(common)
      dec = TorchConv(c, (1, 1), use_bias=False, name=f"dec{i}_conv2")(nn.relu(dec))
      h_t.append(common)
      f_hat.append(dec)
    return h_s, h_t, f_hat
