"""Feature-statistic transfer: channel mean/variance matching and AdaIN-based KD.

Yang, Martinez, Bulat, Tzimiropoulos, "Knowledge distillation via adaptive instance
normalization" (arXiv 2003.04289). Only the abstract and the same authors' SRRL code
(``distiller_zoo/AIN.py``: the connector and ``statm_loss``) were available: ``mean_matching``
and the connector (``kd_jax.methods.statistics``) follow that code; ``adain_loss`` and ``stat_matching`` are our
reconstruction from the abstract (docs/methods.md, *What is inferred*), every choice a parameter.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from kd_jax.losses.common import LOGITS, MAP, expects, float32
from kd_jax.losses.logits import kd


def channel_mean_std(f: jax.Array, *, eps: float,
                     unbiased: bool) -> tuple[jax.Array, jax.Array]:
  """[B, H, W, C] -> (mean [B, C], std [B, C]) over the spatial positions;
  ``std = sqrt(var + eps)``, var biased (``unbiased=True``: divide by H*W - 1, as
  ``torch.var``'s default and common AdaIN code)."""
  f = float32(f)
  mean = jnp.mean(f, axis=(1, 2))
  var = jnp.var(f, axis=(1, 2), ddof=1 if unbiased else 0)
  return mean, jnp.sqrt(var + eps)


@expects(f_s=MAP, f_t=MAP)
def mean_matching(f_s: jax.Array, f_t: jax.Array) -> jax.Array:
  """SRRL ``statm_loss``: mean over B and C of ``(mu_S - mu_T)^2``, ``mu`` the per-example
  spatial mean of each channel. f_s (after the connector) and f_t: [B, H, W, C]."""
  f_s, f_t = float32(f_s, f_t)
  mu_s = jnp.mean(f_s, axis=(1, 2))
  mu_t = jnp.mean(jax.lax.stop_gradient(f_t), axis=(1, 2))
  return jnp.mean(jnp.square(mu_s - mu_t))


@expects(f_s=MAP, f_t=MAP)
def stat_matching(f_s: jax.Array, f_t: jax.Array, *, eps: float, unbiased: bool) -> jax.Array:
  """Mean and standard-deviation matching (the L2-on-statistics baseline of the AdaIN paper):
  mean over B and C of ``(mu_S - mu_T)^2 + (sigma_S - sigma_T)^2``. [B, H, W, C] each."""
  mu_s, sd_s = channel_mean_std(f_s, eps=eps, unbiased=unbiased)
  mu_t, sd_t = channel_mean_std(jax.lax.stop_gradient(f_t), eps=eps, unbiased=unbiased)
  return jnp.mean(jnp.square(mu_s - mu_t) + jnp.square(sd_s - sd_t))


def adain(content: jax.Array, style: jax.Array, *, eps: float, unbiased: bool) -> jax.Array:
  """Adaptive instance normalisation: ``sigma(style) * (content - mu(content)) /
  sigma(content) + mu(style)``, per example and channel. content [B, H, W, C], style
  [B, H', W', C] (only its statistics are used)."""
  mu_c, sd_c = channel_mean_std(content, eps=eps, unbiased=unbiased)
  mu_s, sd_s = channel_mean_std(style, eps=eps, unbiased=unbiased)
  normalised = (float32(content) - mu_c[:, None, None]) / sd_c[:, None, None]
  return sd_s[:, None, None] * normalised + mu_s[:, None, None]


@expects(f_s=MAP, f_t=MAP)
def adain_loss(f_s: jax.Array, f_t: jax.Array, teacher_tail: Callable[[jax.Array], jax.Array],
               *, eps: float, unbiased: bool, kind: str, temperature: float,
               teacher_logits: jax.Array | None = None) -> jax.Array:
  """AdaIN-KD [INFERRED reconstruction]: the student's statistics are
  injected into the teacher's feature, and the teacher's remaining layers judge the result.

  f_s: the connected student map [B, H', W', C_T], f_t: the teacher's
  map at the same stage [B, H, W, C_T], teacher_tail: the frozen teacher's layers after
  that stage, [B, H, W, C_T] -> logits [B, K] (a closure over its variables). With
  ``y = tail(adain(f_t; f_s))`` and ``y_T = tail(f_t)``: ``kind='mse'``: mean over B*K of
  ``(y - y_T)^2``; ``kind='kl'``: Hinton KD of ``y`` towards ``y_T`` at ``temperature``.
  Gradients reach the student only through ``mu(f_s)`` and ``sigma(f_s)``.
  teacher_logits: ``y_T`` where the teacher's forward pass already computed it (the tail is
  then run once, on the re-normalised map).
  """
  f_t = jax.lax.stop_gradient(f_t)
  y_t = teacher_tail(f_t) if teacher_logits is None else teacher_logits
  y_t = float32(jax.lax.stop_gradient(y_t))
  y = float32(teacher_tail(adain(f_t, f_s, eps=eps, unbiased=unbiased).astype(f_t.dtype)))
  if kind == "mse":
    return jnp.mean(jnp.square(y - y_t))
  if kind == "kl":
    return kd(y, y_t, temperature=temperature)
  raise ValueError(f"adain_loss: kind must be 'mse' or 'kl', got {kind!r}")


@expects(f_s=MAP, teacher_logits=LOGITS)
def teacher_head_mse(f_s: jax.Array, teacher_logits: jax.Array,
                     teacher_head: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """SRRL's teacher-head evaluation: ``mean over B*K of (head(f_s) - teacher_logits)^2``,
  ``head`` the frozen teacher's pooling + classifier, f_s the connected student map."""
  y = float32(teacher_head(f_s))
  return jnp.mean(jnp.square(y - float32(jax.lax.stop_gradient(teacher_logits))))


__all__ = ["adain", "adain_loss", "channel_mean_std", "mean_matching",
           "stat_matching", "teacher_head_mse"]
