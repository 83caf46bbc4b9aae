"""Losses on relations between the examples of a batch (RepDistiller ``distiller_zoo/``):
SP, CC, RKD, PKT. Inputs are [B, ...] features; maps are flattened per example."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses.common import (BATCH, VECTORS, absolute, expects, flatten, float32,
                                  l2_normalize, smooth_l1)


@expects(f_s=BATCH, f_t=BATCH)
def similarity_preserving(f_s: jax.Array, f_t: jax.Array) -> jax.Array:
  """Similarity-preserving KD (Tung & Mori, ICCV 2019; RepDistiller ``Similarity``).

  f_s [B, ...], f_t [B, ...] (any shapes, flattened per example). With ``G = F F^T``
  [B, B] and each row L2-normalised: ``sum (G_T - G_S)^2 / B^2``.
  """
  f_s, f_t = float32(f_s, f_t)
  b = f_s.shape[0]
  gram = lambda f: l2_normalize(flatten(f) @ flatten(f).T, axis=1)
  diff = gram(jax.lax.stop_gradient(f_t)) - gram(f_s)
  return jnp.sum(jnp.square(diff)) / (b * b)


@expects(e_s=VECTORS, e_t=VECTORS)
def correlation_congruence(e_s: jax.Array, e_t: jax.Array) -> jax.Array:
  """Correlation congruence (Peng et al., ICCV 2019; RepDistiller ``Correlation``).

  e_s, e_t [B, D]: both sides' linear embeddings (both embeddings are trained, so the
  teacher side is *not* stop-gradient here). With ``delta = |e_s - e_t|``:
  mean over i = 0..B-2 of ``sum_d delta[i, d] * delta[i + 1, d]``.
  """
  e_s, e_t = float32(e_s, e_t)
  delta = absolute(e_s - e_t)  # Where they tie, torch's gradient (0), as the reference.
  return jnp.mean(jnp.sum(delta[:-1] * delta[1:], axis=1))


def pairwise_distances(e: jax.Array, squared: bool = False, eps: float = 1e-12) -> jax.Array:
  """[B, D] -> [B, B] Euclidean distances from ``|a|^2 + |b|^2 - 2 a.b`` clamped at ``eps``,
  diagonal set to 0 (RepDistiller ``RKDLoss.pdist``)."""
  sq = jnp.sum(jnp.square(e), axis=1)
  d = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (e @ e.T), eps)
  if not squared:
    d = jnp.sqrt(d)
  return jnp.where(jnp.eye(e.shape[0], dtype=bool), 0.0, d)


def _normalised_distances(e):
  d = pairwise_distances(e)
  positive = d > 0
  return d / (jnp.sum(jnp.where(positive, d, 0.0)) / jnp.sum(positive))


def _angles(e):
  """[B, D] -> [B, B, B]: ``cos`` between ``e_j - e_i`` and ``e_k - e_i`` at [i, j, k]."""
  n = l2_normalize(e[None, :, :] - e[:, None, :], axis=2)
  return jnp.einsum("ijd,ikd->ijk", n, n)


@expects(f_s=BATCH, f_t=BATCH)
def rkd(f_s: jax.Array, f_t: jax.Array, *, distance_weight: float,
        angle_weight: float) -> jax.Array:
  """Relational KD (Park et al., CVPR 2019; RepDistiller ``RKDLoss``).

  f_s [B, ...], f_t [B, ...] flattened per example. Distance term: pairwise distances
  divided by the mean of their positive entries, smooth-L1 (mean over B^2). Angle term:
  cosines of all triplets, smooth-L1 (mean over B^3). ``w_d * L_d + w_a * L_a``; the
  teacher side gets no gradient.
  """
  s, t = float32(flatten(f_s), flatten(f_t))
  t = jax.lax.stop_gradient(t)
  loss_d = smooth_l1(_normalised_distances(s), _normalised_distances(t))
  loss_a = smooth_l1(_angles(s), _angles(t))
  return distance_weight * loss_d + angle_weight * loss_a


def _xlog1px_minus_x(x: jax.Array) -> jax.Array:
  """``(1 + x) log(1 + x) - x`` (about ``x^2/2``), accurate for small ``|x|`` (series)."""
  small = jnp.abs(x) < 0.05
  xs = jnp.where(small, x, 0.0)
  series = xs * xs * (1 / 2 - xs * (1 / 6 - xs * (1 / 12 - xs * (1 / 20 - xs * (1 / 30 - xs / 42)))))
  xl = jnp.where(small, 0.1, x)
  return jnp.where(small, series, (1.0 + xl) * jnp.log1p(xl) - xl)


@expects(f_s=BATCH, f_t=BATCH)
def pkt(f_s: jax.Array, f_t: jax.Array, *, eps: float) -> jax.Array:
  """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018; RepDistiller ``PKT``).

  f_s [B, D], f_t [B, D'] (flattened per example). Cosine similarities
  (``x / (||x|| + eps)``, NaN set to 0) mapped to ``(s + 1) / 2``, each row normalised to
  sum 1; then mean over B^2 of ``p_T * log((p_T + eps) / (p_S + eps))``.

  The value is the reference's, computed without its float32 cancellation: rows of both
  matrices sum to 1, so ``sum p_T log r = sum [p_T log r - (p_T - p_S)]``, and each term is
  ``(p_S + eps) h(x) - eps log(1 + x)`` with ``x = (p_T - p_S)/(p_S + eps)`` and
  ``h(x) = (1+x) log(1+x) - x >= 0``. (Near-uniform rows make the loss ~1e-5 while its
  terms are ~1e-3: the direct float32 formula, the reference's included, is then off by
  ~1e-5 relative; this form stays within ~1e-7 of the float64 value.)
  """
  def probabilities(x):
    # max(., 1e-30): a zero row gets a zero gradient instead of NaN (value change < 1e-8).
    x = x / (jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=1, keepdims=True), 1e-30)) + eps)
    x = jnp.where(jnp.isnan(x), 0.0, x)
    sim = (x @ x.T + 1.0) / 2.0
    return sim / jnp.sum(sim, axis=1, keepdims=True)

  s, t = float32(flatten(f_s), flatten(f_t))
  p_s, p_t = probabilities(s), probabilities(jax.lax.stop_gradient(t))
  x = (p_t - p_s) / (p_s + eps)
  return jnp.mean((p_s + eps) * _xlog1px_minus_x(x) - eps * jnp.log1p(x))


__all__ = ["correlation_congruence", "pairwise_distances", "pkt", "rkd",
           "similarity_preserving"]
