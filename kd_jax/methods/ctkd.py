"""CTKD: curriculum temperature (Li et al., AAAI 2023; zhengli97/CTKD ``Global_T``): KD or DKD
at a learnable global temperature ``t_start + t_end * sigmoid(GRL(g, lambda))``, trained
adversarially: the gradient reversal layer is the identity forward and multiplies the
gradient by ``lambda`` (not ``-lambda``; lambda itself is <= 0), lambda following the
reference's cosine schedule over the epochs (``CosineDecay(max, min, loops)``, epoch from 1).
The temperature parameter is the method's adapter (one scalar ``global_T``, initialised to
1, optimised and weight-decayed with the student as in the reference)."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.methods.base import NON_NEGATIVE, POSITIVE, Context, Method, register
from kd_jax.methods.logits import standardized_logits


@jax.custom_vjp
def gradient_reversal(x: jax.Array, lam: jax.Array) -> jax.Array:
  """The identity forward; backward, the gradient times ``lam`` (CTKD's
  ``GradientReversalFunction``; ``lam`` gets no gradient)."""
  return x


def _grl_fwd(x, lam):
  return x, lam


def _grl_bwd(lam, g):
  return (lam * g).astype(g.dtype), jnp.zeros_like(lam)


gradient_reversal.defvjp(_grl_fwd, _grl_bwd)


def cosine_decay(epoch: jax.Array | float, max_value: float, min_value: float,
                 num_loops: float) -> jax.Array:
  """CTKD's ``CosineDecay.get_value(epoch)``: ``(cos(pi * i / L) + 1) / 2 * (max - min) + min``
  with ``i = clip(epoch, 0, L)``: ``max`` at epoch 0, ``min`` from epoch L on."""
  i = jnp.clip(jnp.asarray(epoch, jnp.result_type(float)), 0.0, num_loops)
  return (jnp.cos(i * math.pi / num_loops) + 1.0) * 0.5 * (max_value - min_value) + min_value


class GlobalTemperature(nn.Module):
  """CTKD's ``Global_T``: one learnable scalar (shape [1], initialised to 1), returned as the
  student-side map the loss reads."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    del s_maps, t_maps, train
    return [self.param("global_T", nn.initializers.ones, (1,), jnp.float32)], None


@register("ctkd")
class CTKD(Method):
  """Curriculum temperature KD. base: ``kd`` (the reference's KD at the learned temperature;
  ``logit_stand`` standardizes both sides first, the logit-standardization authors'
  ``DistillKL_logit_stand``) or ``dkd`` (its DKD at the learned temperature, alpha and
  beta; no warm-up, as the reference). Defaults: the reference's CIFAR script (t_start 1,
  t_end 20, lambda from 0 to -1 over 10 epochs; DKD alpha 1, beta 2)."""
  base: str = "kd"
  t_start: float = 1.0
  t_end: float = 20.0
  decay_max: float = 0.0
  decay_min: float = -1.0
  decay_loops: float = 10.0
  alpha: float = 1.0
  beta: float = 2.0
  logit_stand: bool = False
  ranges = {"t_start": POSITIVE, "t_end": NON_NEGATIVE, "decay_loops": POSITIVE,
            "alpha": NON_NEGATIVE, "beta": NON_NEGATIVE}

  @property
  def needs_labels(self) -> bool:  # DKD reads the labels; KD does not.
    return self.base == "dkd"

  def __post_init__(self):
    super().__post_init__()
    if self.base not in ("kd", "dkd"):
      raise ValueError(f"ctkd: base must be 'kd' or 'dkd', got {self.base!r}")
    if self.base == "dkd" and self.logit_stand:
      raise ValueError("ctkd: logit_stand is defined for base 'kd' only (the reference's "
                       "DistillKL_logit_stand)")

  def adapter(self) -> nn.Module:
    return GlobalTemperature()

  def temperature(self, global_t: jax.Array, epoch: jax.Array | None) -> jax.Array:
    """``t_start + t_end * sigmoid(GRL(g, lambda(epoch)))``, shape [1]."""
    lam = cosine_decay(1.0 if epoch is None else epoch, self.decay_max, self.decay_min,
                       self.decay_loops)
    return self.t_start + self.t_end * jax.nn.sigmoid(gradient_reversal(global_t, lam))

  def loss(self, ctx: Context):
    t = self.temperature(ctx.s_maps[0], ctx.epoch)[0]
    zs, zt = standardized_logits(self.logit_stand, ctx)  # (Refused with base 'dkd'.)
    if self.base == "dkd":
      return losses.dkd(zs, zt, ctx.batch["label"], alpha=self.alpha, beta=self.beta,
                        temperature=t, warmup=1.0)
    return losses.kd(zs, zt, temperature=t)
