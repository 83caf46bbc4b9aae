"""Activation map adaptation (Wu et al., 2020; arXiv 2010.13500) [INFERRED: only the
abstract is known; README, *What is inferred*].

An adaptive module ``A`` stands in for the teacher's last stage: it maps the teacher's map
*before* that stage to the shape of the student's last-stage map. In a first stage ``A``
(with a 1x1 ``lift`` to the teacher's pooled width) is trained through the rest of the
frozen teacher (global average pooling, then the teacher's own classifier) with
cross-entropy, optionally plus an L2 pull of the pooled lifted map to the teacher's pooled
feature, so that the adapted teacher keeps its accuracy. Then the student mimics ``A``'s
map (the hint) FitNet-style while ``A`` stays frozen.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax.losses.common import float32
from kd_jax.losses.features import ConvReg, TorchConv
from kd_jax.losses.logits import cross_entropy
from kd_jax.models import layers


class AdaptiveModule(nn.Module):
  """Two conv-BN-ReLU layers from the teacher's map before its last stage to the student's
  last-stage shape: ``ConvReg`` (3x3 stride 2 / transposed / valid conv, by the heights)
  to ``out_channels``, then 3x3 conv, BN, ReLU. [B, tH, tW, Ct] -> [B, sH, sW, Cs]."""

  out_channels: int
  out_size: tuple[int, int]

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = ConvReg(self.out_channels, self.out_size, name="conv1")(x, train)
    x = TorchConv(self.out_channels, (3, 3), padding=1, name="conv2")(x)
    return nn.relu(layers.batch_norm(train)(x))


class Lift(nn.Module):
  """1x1 conv, BN, ReLU: the hint's channels to the teacher's pooled width."""

  features: int

  @nn.compact
  def __call__(self, x, train: bool = True):
    return nn.relu(layers.batch_norm(train)(TorchConv(self.features, (1, 1))(x)))


def adapted_teacher_loss(lifted: jax.Array, pooled_t: jax.Array, labels: jax.Array,
                         kernel: jax.Array, bias: jax.Array, l2_weight: float = 0.0,
                         mask: jax.Array | None = None) -> jax.Array:
  """The adaptive module's stage loss: cross-entropy of the teacher's frozen classifier
  (``kernel`` [D, C], ``bias`` [C]) on the spatial mean of the lifted map [B, H, W, D]
  (mean over labelled examples when ``mask`` is given), plus ``l2_weight`` * the mean
  squared difference between that mean and the teacher's pooled feature [B, D]."""
  pooled = jnp.mean(float32(lifted), axis=(1, 2))
  kernel, bias = float32(jax.lax.stop_gradient(kernel), jax.lax.stop_gradient(bias))
  loss = cross_entropy(pooled @ kernel + bias, labels, mask=mask)
  if l2_weight:
    loss = loss + l2_weight * jnp.mean(jnp.square(pooled - jax.lax.stop_gradient(pooled_t)))
  return loss
