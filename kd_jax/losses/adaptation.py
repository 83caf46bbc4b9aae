"""Activation map adaptation (Wu et al., 2020; arXiv 2010.13500) [INFERRED: only the
abstract is known; docs/methods.md, *What is inferred*]: the adaptive module's phase loss. The
adaptive module and the method are in ``kd_jax/methods/ama.py``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses.common import LABELS, MAP, Array, VECTORS, expects, float32
from kd_jax.losses.logits import cross_entropy


@expects(lifted=MAP, pooled_t=VECTORS, labels=LABELS, kernel=Array("[D, C]", (2,)),
         bias=Array("[C]", (1,)), mask=Array("[B]", (1,)))
def adapted_teacher_loss(lifted: jax.Array, pooled_t: jax.Array, labels: jax.Array,
                         kernel: jax.Array, bias: jax.Array, *, l2_weight: float,
                         mask: jax.Array | None = None) -> jax.Array:
  """The adaptive module's phase loss: cross-entropy of the teacher's frozen classifier
  (``kernel`` [D, C], ``bias`` [C]) on the spatial mean of the lifted map [B, H, W, D]
  (mean over labelled examples when ``mask`` is given), plus ``l2_weight`` * the mean
  squared difference between that mean and the teacher's pooled feature [B, D]."""
  pooled = jnp.mean(float32(lifted), axis=(1, 2))
  kernel, bias = float32(jax.lax.stop_gradient(kernel), jax.lax.stop_gradient(bias))
  loss = cross_entropy(pooled @ kernel + bias, labels, mask=mask)
  if l2_weight:
    loss = loss + l2_weight * jnp.mean(jnp.square(pooled - jax.lax.stop_gradient(pooled_t)))
  return loss
