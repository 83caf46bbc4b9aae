"""Losses over a vision transformer's tokens [B, N, D] (patch tokens, row-major)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses.common import Array, Arrays, expects, float32

TOKENS = Array("[B, N, D]", (3,))


def random_token_mask(rng: jax.Array, batch: int, tokens: int, ratio: float) -> jax.Array:
  """MAE's ``random_masking`` as ViTKD draws it: per example, uniform noise sorted, the
  ``N - int(N * (1 - ratio))`` tokens of largest noise masked. float32 [B, N], 1 = masked."""
  keep = int(tokens * (1 - ratio))
  noise = jax.random.uniform(rng, (batch, tokens))
  rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
  return (rank >= keep).astype(jnp.float32)


@expects(same_length=("low_s", "low_t"), low_s=Arrays(TOKENS), low_t=Arrays(TOKENS),
         high_s=TOKENS, high_t=TOKENS)
def vitkd(low_s: list[jax.Array], low_t: list[jax.Array], high_s: jax.Array,
          high_t: jax.Array, mask: jax.Array, *, alpha: float, beta: float,
          lam: float) -> jax.Array:
  """ViTKD (Yang et al., 2022; yzd-v/cls_KD ``ViTKDLoss``): mimicking of the shallow layers'
  tokens and generation of the deep layer's masked tokens.

  low_s, low_t: the shallow layers' patch tokens, each [B, N, D] (the student's already
  aligned to the teacher's width); high_s: the student's deep tokens after masking and the
  generation block; high_t: the teacher's [B, N, D]; mask [B, N], 1 where masked (ratio
  ``lam``). ``alpha * sum_l sum (low_s - low_t)^2 / B + beta / lam * sum (mask * (high_s -
  high_t))^2 / B``. float32; the teacher side gets no gradient."""
  b = high_s.shape[0]
  sg = jax.lax.stop_gradient
  mimic = sum(jnp.sum(jnp.square(float32(s) - sg(float32(t)))) for s, t in zip(low_s, low_t))
  m = float32(mask)[..., None]
  gen = jnp.sum(jnp.square(float32(high_s) * m - sg(float32(high_t)) * m))
  return mimic / b * alpha + gen / b * beta / lam
