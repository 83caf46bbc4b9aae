"""Knowledge amalgamation by common feature learning (CFL; Luo et al., IJCAI 2019; the
official VainF/CommonFeatureLearning code): several teachers of different architectures and
tasks, one student over the union of their classes.

Adapters map the student's and each teacher's last feature map into one common space
through a shared extractor; MMD pulls the student's common feature towards each
teacher's; a decoder per teacher must reconstruct the teacher's map from its common
feature, which keeps the common space faithful (not collapsed). The adapters and the
extractor are in ``kd_jax/methods/cfl.py``.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from kd_jax.losses.common import BATCH, MAP, MAPS, expects, flatten, float32, l2_normalize, match_spatial


@jax.custom_vjp
def _pairwise_sq_differences(z: jax.Array) -> jax.Array:
  """[N, N]: ``sum_k (z_ik - z_jk)^2``, each difference rounded once."""
  return jnp.sum(jnp.square(z[:, None, :] - z[None, :, :]), axis=-1)


def _psd_backward(z, g):
  # d/dz_i of sum_ij g_ij |z_i - z_j|^2 = 2 (rowsum + colsum)(g)_i z_i - 2 ((g + g^T) z)_i:
  # matmuls, where autodiff of the broadcast difference would materialise [N, N, d].
  gs = g + g.T
  return (2.0 * (jnp.sum(gs, 1)[:, None] * z - gs @ z),)


_pairwise_sq_differences.defvjp(lambda z: (_pairwise_sq_differences(z), z), _psd_backward)


@jax.custom_vjp
def _pairwise_sq_norm_differences(z: jax.Array) -> jax.Array:
  """[N, N]: ``|z_i|^2 - |z_j|^2`` as ``sum_k (z_ik - z_jk)(z_ik + z_jk)``: no cancellation
  of the two norms where the rows are close."""
  return jnp.sum((z[:, None, :] - z[None, :, :]) * (z[:, None, :] + z[None, :, :]), axis=-1)


def _psnd_backward(z, g):
  return (2.0 * (jnp.sum(g, 1) - jnp.sum(g, 0))[:, None] * z,)


_pairwise_sq_norm_differences.defvjp(
    lambda z: (_pairwise_sq_norm_differences(z), z), _psnd_backward)


def _sq_distances(z: jax.Array, normalized: bool) -> jax.Array:
  """[N, N] squared Euclidean distances between the rows of z [N, d] (l2-normalised first
  when ``normalized``, as ``l2_normalize``), clamped at 1e-12 (as the reference).

  Not ``|a|^2 + |b|^2 - 2 a.b``: that expansion cancels to rounding noise (~1e-7 in
  float32, summation-order dependent) where rows are close, and the sigma = 0.001 kernel,
  ``exp(-d / 2e-6)``, turns the noise into errors of the loss. Here every term is rounded
  on the scale of the rows' difference. For normalised rows a/p and b/q (p, q the norms):
  ``a/p - b/q = (a - b)/p + b s`` with ``s = (q - p)/(pq) = -T/(pq(p + q))``,
  ``T = |a|^2 - |b|^2 = (a - b).(a + b)``, so ``d = S/p^2 + s (T - S)/p + s^2 q^2`` with
  ``S = |a - b|^2``. Rows of norm <= 1e-12 (l2_normalize leaves them ~0) use the expansion.
  XLA fuses each pairwise sum into its reduction; nothing [N, N, d] is materialised."""
  sq_diff = _pairwise_sq_differences(z)
  if not normalized:
    return jnp.maximum(sq_diff, 1e-12)
  # The barrier keeps XLA from fusing the two pairwise reductions into one that
  # materialises their shared [N, N, d] operands.
  z_again, sq_diff = jax.lax.optimization_barrier((z, sq_diff))
  t = _pairwise_sq_norm_differences(z_again)
  sq_norm = jnp.sum(z * z, axis=-1)
  tiny = sq_norm <= 1e-24
  norm = jnp.sqrt(jnp.where(tiny, 1.0, sq_norm))
  p, q = norm[:, None], norm[None, :]
  s = -t / (p * q * (p + q))
  d = sq_diff / (p * p) + s * (t - sq_diff) / p + s * s * q * q
  u = l2_normalize(z)
  u_sq = jnp.sum(u * u, axis=-1)
  expanded = u_sq[:, None] + u_sq[None, :] - 2.0 * u @ u.T
  return jnp.maximum(jnp.where(tiny[:, None] | tiny[None, :], expanded, d), 1e-12)


@expects(x=BATCH, y=BATCH)
def mmd2(x: jax.Array, y: jax.Array, *, sigmas: Sequence[float],
         normalized: bool = True) -> jax.Array:
  """Biased squared MMD between two batches (CFL's ``calc_mmd``).

  x [B, ...], y [B', ...] are flattened to rows (and l2-normalised per row when
  ``normalized``); ``K(D) = sum_sigma exp(-D / (2 sigma^2))`` over squared distances;
  ``MMD^2 = relu(mean K(D_xx) + mean K(D_yy) - 2 mean K(D_xy))``, diagonals included.
  Gradients reach both sides. Exactly 0 for identical batches; float32 agrees with float64
  to ~1e-5 relative also for near-identical batches (see ``_sq_distances``).
  """
  x, y = float32(flatten(x)), float32(flatten(y))

  def kernel(d):  # Less 1 per kernel (expm1): the 1s cancel exactly in MMD^2.
    return sum(jnp.expm1(-d / (2.0 * s * s)) for s in sigmas)

  # One [B + B', B + B'] distance matrix: the xx, yy and xy blocks are the same numbers.
  n = x.shape[0]
  k = kernel(_sq_distances(jnp.concatenate([x, y], axis=0), normalized))
  k_xx, k_yy, k_xy, k_yx = k[:n, :n], k[n:, n:], k[:n, n:], k[n:, :n]
  if k_xx.shape == k_yy.shape:  # Pair by pair before the sum: the kernels of close
    # batches cancel term by term (mean k_xy = mean k_yx), not as differences of large sums.
    value = jnp.mean((k_xx - k_xy) + (k_yy - k_yx))
  else:
    value = jnp.mean(k_xx) + jnp.mean(k_yy) - 2.0 * jnp.mean(k_xy)
  return jax.nn.relu(value)


@expects(f_hat=BATCH, f_t=BATCH)
def reconstruction(f_hat: jax.Array, f_t: jax.Array) -> jax.Array:
  """``F.mse_loss(f_hat, f_t)``: mean over every element; the teacher side is constant."""
  f_hat, f_t = float32(f_hat, jax.lax.stop_gradient(f_t))
  return jnp.mean(jnp.square(f_hat - f_t))


@expects(h_s=MAP, h_t=MAPS, f_hat=MAPS, f_t=MAPS, same_length=("h_t", "f_t"))
def cfl(h_s: jax.Array, h_t: Sequence[jax.Array], f_hat: Sequence[jax.Array],
        f_t: Sequence[jax.Array], *, recon_weight: float,
        sigmas: Sequence[float]) -> jax.Array:
  """CFL's common-feature loss ``sum_i MMD^2(h_s, h_t_i) + recon_weight * sum_i
  mse(f_hat_i, f_t_i)`` (``CFLoss``; ``beta`` = recon_weight, 1 in the paper's code).

  h_s: the student's common feature [B, H, W, h]; h_t, f_hat, f_t: one per teacher (its
  common feature, its reconstruction of its map, its map). Where a teacher's map has
  another spatial size than the student's (the reference's are all 7x7), the larger common
  feature is average-pooled to the smaller size before the MMD."""
  if len(f_hat) != len(f_t):
    raise ValueError(f"cfl: f_hat has {len(f_hat)} maps and f_t {len(f_t)}; they must have "
                     f"the same number")
  mmd = sum(mmd2(*match_spatial(h_s, h), sigmas=sigmas) for h in h_t)
  recon = sum(reconstruction(r, f) for r, f in zip(f_hat, f_t))
  return mmd + recon_weight * recon
