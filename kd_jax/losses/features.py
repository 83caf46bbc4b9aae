"""Losses on intermediate feature maps (NHWC).

The RepDistiller family (Tian et al., "Contrastive Representation Distillation", ICLR
2020, ``distiller_zoo/``): FitNet, AT, FT, AB, VID, NST, FSP; and ReviewKD's hierarchical
context loss (mdistiller ``hcl_loss``). Each function equals the
reference's arithmetic on the NCHW tensor; the docstrings give shapes and reductions.
Where maps differ in size the larger is adaptive-average-pooled (``common.match_spatial``)
inside the loss, as in the reference. A per-layer loss takes one map per side; the method
sums it over the layers it reads (``kd_jax/methods/``). AB and FSP, whose formulas span
layers, take lists.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from kd_jax.losses.common import (MAP, MAPS, Array, absolute, adaptive_avg_pool, expects,
                                  flatten, float32, l2_normalize, match_spatial)


@expects(f_s=MAP, f_t=MAP)
def fitnet(f_s: jax.Array, f_t: jax.Array) -> jax.Array:
  """FitNet hint loss (Romero et al., ICLR 2015; RepDistiller ``HintLoss``).

  f_s: the student map after its ``ConvReg`` regressor, f_t: the teacher map, both
  [B, H, W, C]. Mean over all elements of ``(f_s - f_t)^2``.
  """
  f_s, f_t = float32(f_s, f_t)
  return jnp.mean(jnp.square(f_s - jax.lax.stop_gradient(f_t)))


def attention_map(f: jax.Array, p: float) -> jax.Array:
  """AT's map: [B, H, W, C] -> [B, H*W], ``l2_normalize(mean_c f^p)`` per example."""
  return l2_normalize(flatten(jnp.mean(f ** p, axis=-1)), axis=1)


@expects(f_s=MAP, f_t=MAP)
def attention_transfer(f_s: jax.Array, f_t: jax.Array, *, p: float) -> jax.Array:
  """Attention transfer (Zagoruyko & Komodakis, ICLR 2017; RepDistiller ``Attention``).

  f_s [B, Hs, Ws, Cs], f_t [B, Ht, Wt, Ct] (channels may differ); sizes matched by pooling.
  One layer: mean over B*H*W of ``(attention_map(f_s) - attention_map(f_t))^2`` (the
  reference sums it over stage1..3, weight 1000).
  """
  f_s, f_t = match_spatial(*float32(f_s, f_t))
  diff = attention_map(f_s, p) - attention_map(jax.lax.stop_gradient(f_t), p)
  return jnp.mean(jnp.square(diff))


@expects(factor_s=MAP, factor_t=MAP)
def factor_transfer(factor_s: jax.Array, factor_t: jax.Array, *, p1: float,
                    p2: float) -> jax.Array:
  """Factor transfer (Kim et al., NeurIPS 2018; RepDistiller ``FactorTransfer``).

  factor_s = ``Translator(f_s)``, factor_t = ``Paraphraser(f_t, is_factor=True)``, both
  [B, H, W, C'] (pooled to one size if they differ). With ``F(x) = l2_normalize(mean_c
  x^p1)`` per example: mean over B*H*W of ``|F(s) - F(t)|`` (``p2 == 1``) or
  ``(F(s) - F(t))^p2``.
  """
  factor_s, factor_t = match_spatial(*float32(factor_s, factor_t))
  diff = attention_map(factor_s, p1) - attention_map(jax.lax.stop_gradient(factor_t), p1)
  return jnp.mean(absolute(diff)) if p2 == 1 else jnp.mean(diff ** p2)


@expects(reconstruction=MAP, f_t=MAP)
def paraphraser_reconstruction(reconstruction: jax.Array, f_t: jax.Array) -> jax.Array:
  """FT's initialisation phase: mean over all elements of ``(reconstruction - f_t)^2``."""
  reconstruction, f_t = float32(reconstruction, f_t)
  return jnp.mean(jnp.square(reconstruction - jax.lax.stop_gradient(f_t)))


def _ab_layer(s: jax.Array, t: jax.Array, margin: float) -> jax.Array:
  s_pos = (s > -margin) & (t <= 0)
  s_neg = (s <= margin) & (t > 0)
  loss = jnp.square(s + margin) * s_pos + jnp.square(s - margin) * s_neg
  return jnp.sum(absolute(loss))


@expects(f_s=MAPS, f_t=MAPS, same_length=("f_s", "f_t"))
def activation_boundaries(f_s: Sequence[jax.Array], f_t: Sequence[jax.Array], *,
                          margin: float) -> jax.Array:
  """Activation-boundary transfer (Heo et al., AAAI 2019; RepDistiller ``ABLoss``).

  f_s: the student's pre-ReLU maps after the AB connector, f_t: the teacher's pre-ReLU
  maps, lists of n maps [B, H, W, C], equal shapes pairwise; layer i is weighted
  ``2^(i - n + 1)`` (i = 0..n-1). Per layer: ``sum |(s+m)^2 [s > -m, t <= 0] + (s-m)^2
  [s <= m, t > 0]| / B * 3 / 1000``; summed over layers. (The reference uses it only in an
  initialisation phase of the connector and the student's feature layers.)
  """
  n = len(f_s)
  total = 0.0
  for i, (s, t) in enumerate(zip(f_s, f_t)):
    s, t = float32(s, t)
    total = total + 2.0 ** (i - n + 1) * _ab_layer(s, jax.lax.stop_gradient(t), margin) / s.shape[0]
  return total / 1000.0 * 3.0


def vid_match(f_s: jax.Array, f_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The pooling VID applies before its regressor (``common.match_spatial``)."""
  return match_spatial(f_s, f_t)


@expects(mean=MAP, variance=Array("[C]", (1,)), f_t=MAP)
def vid(mean: jax.Array, variance: jax.Array, f_t: jax.Array) -> jax.Array:
  """VID's negative log-likelihood: mean over all elements of
  ``0.5 * ((mean - f_t)^2 / variance + log variance)``; mean, f_t [B, H, W, C], variance [C]."""
  mean, variance, f_t = float32(mean, variance, f_t)
  nll = 0.5 * (jnp.square(mean - jax.lax.stop_gradient(f_t)) / variance + jnp.log(variance))
  return jnp.mean(nll)


def _poly_kernel(a: jax.Array, b: jax.Array) -> jax.Array:
  """[B, Ca, N], [B, Cb, N] -> [B, Cb, Ca]: ``(b_i . a_j)^2``."""
  return jnp.square(jnp.einsum("bjn,bin->bij", a, b))


@expects(f_s=MAP, f_t=MAP)
def neuron_selectivity_transfer(f_s: jax.Array, f_t: jax.Array) -> jax.Array:
  """Neuron selectivity transfer (Huang & Wang, 2017; RepDistiller ``NSTLoss``).

  f_s [B, H, W, Cs], f_t [B, H', W', Ct] (pooled to one size). Each channel's spatial
  vector is L2-normalised; with the polynomial kernel ``k(a, b) = (a^T b)^2`` over channel
  pairs: ``mean k(T, T) + mean k(S, S) - 2 mean k(S, T)`` (means over B*C*C'), one layer.
  """
  f_s, f_t = match_spatial(*float32(f_s, f_t))
  to_channels = lambda f: l2_normalize(jnp.transpose(flatten_hw(f), (0, 2, 1)), axis=2)
  s, t = to_channels(f_s), to_channels(jax.lax.stop_gradient(f_t))
  return (jnp.mean(_poly_kernel(t, t)) + jnp.mean(_poly_kernel(s, s))
          - 2.0 * jnp.mean(_poly_kernel(s, t)))


def flatten_hw(f: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H*W, C]."""
  return f.reshape(f.shape[0], -1, f.shape[-1])


def fsp_matrix(bottom: jax.Array, top: jax.Array) -> jax.Array:
  """FSP matrix of two maps of one network: [B, H, W, C1], [B, H', W', C2] (the larger
  pooled to the smaller) -> [B, C2, C1], ``G[c2, c1] = mean_hw top_c2 * bottom_c1``."""
  bottom, top = match_spatial(bottom, top)
  return jnp.einsum("bni,bnj->bji", flatten_hw(bottom), flatten_hw(top)) / (
      bottom.shape[1] * bottom.shape[2])


def check_fsp_channels(s_channels: Sequence[int], t_channels: Sequence[int]) -> None:
  """FSP compares matrices of equal shape: raises unless the channel counts are equal."""
  if list(s_channels) != list(t_channels):
    raise ValueError(f"FSP needs equal channel counts in student and teacher, got "
                     f"{list(s_channels)} and {list(t_channels)}")


@expects(f_s=MAPS, f_t=MAPS, same_length=("f_s", "f_t"))
def fsp(f_s: Sequence[jax.Array], f_t: Sequence[jax.Array]) -> jax.Array:
  """Flow of solution procedure (Yim et al., CVPR 2017; RepDistiller ``FSP``).

  f_s, f_t: the same number of maps ([B, H, W, C], e.g. stem, stage1..3), channel counts
  equal between student and teacher. For each consecutive pair the FSP matrices are
  compared by the mean over B*C2*C1 of the squared difference; summed over pairs.
  """
  check_fsp_channels([f.shape[-1] for f in f_s], [f.shape[-1] for f in f_t])
  f_s = [float32(f) for f in f_s]
  f_t = [float32(jax.lax.stop_gradient(f)) for f in f_t]
  return sum(jnp.mean(jnp.square(fsp_matrix(f_s[i], f_s[i + 1]) - fsp_matrix(f_t[i], f_t[i + 1])))
             for i in range(len(f_s) - 1))


@expects(f_s=MAP, f_t=MAP)
def hcl(f_s: jax.Array, f_t: jax.Array) -> jax.Array:
  """ReviewKD's hierarchical context loss for one level (Chen et al., CVPR 2021; mdistiller
  ``hcl_loss``, which sums it over the levels).

  f_s: the student's fused map, f_t: the teacher's, both [B, H, W, C]. The MSE (mean over
  all elements) of the maps and of their adaptive-average-pooled ``l x l`` versions for
  ``l`` in 4, 2, 1 where ``l < H``, the k-th pooled level used weighted ``2^-k``; divided by
  the sum of the weights used (1 + 1/2 + 1/4 + 1/8 when all are used).
  """
  f_s, f_t = float32(f_s, jax.lax.stop_gradient(f_t))
  if f_s.shape != f_t.shape:
    raise ValueError(f"hcl compares maps of one shape, got {f_s.shape} and {f_t.shape}")
  h = f_s.shape[1]
  loss, weight, total = jnp.mean(jnp.square(f_s - f_t)), 1.0, 1.0
  for size in (4, 2, 1):
    if size >= h:
      continue
    weight /= 2.0
    loss = loss + weight * jnp.mean(jnp.square(adaptive_avg_pool(f_s, (size, size))
                                               - adaptive_avg_pool(f_t, (size, size))))
    total += weight
  return loss / total


__all__ = ["activation_boundaries", "adaptive_avg_pool",
           "attention_map", "attention_transfer", "check_fsp_channels", "factor_transfer",
           "fitnet", "fsp", "fsp_matrix", "hcl", "neuron_selectivity_transfer",
           "paraphraser_reconstruction", "vid", "vid_match"]
