"""MobileNetV2 of RepDistiller (models/mobilenetv2.py ``mobile_half``: expansion 6, width
0.5), the "MobileNetV2" of the CIFAR tables.

conv3x3/2 -> BN -> ReLU (16 ch); seven stages of inverted residuals (1x1 expand -> BN ->
ReLU -> depthwise 3x3 -> BN -> ReLU -> 1x1 project -> BN, residual when stride 1 and widths
equal) with (t, c, n, s) = (1,16,1,1), (6,24,2,1), (6,32,3,2), (6,64,4,2), (6,96,3,1),
(6,160,3,2), (6,320,1,1), widths x0.5; 1x1 conv to 1280 -> BN -> ReLU; global average pool;
Linear.

Features as RepDistiller's ``feat`` list (32x32 input): ``stem`` [B, 16, 16, 16], ``stage1``
[B, 16, 16, 12] (after blocks[1]), ``stage2`` [B, 8, 8, 16] (blocks[2]), ``stage3``
[B, 4, 4, 48] (blocks[4]), ``stage4`` [B, 2, 2, 160] (blocks[6]), ``pooled`` [B, 1280].
Block outputs are linear (no ReLU), so ``preact/stage<k>`` equals ``stage<k>``, as in the
reference.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models import layers

SETTING = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
  out: int
  stride: int
  expand: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    hidden = x.shape[-1] * self.expand
    y = layers.conv(hidden, 1, padding=0, dtype=self.dtype)(x)
    y = nn.relu(layers.batch_norm(train, self.dtype)(y))
    y = layers.conv(hidden, 3, self.stride, groups=hidden, dtype=self.dtype)(y)
    y = nn.relu(layers.batch_norm(train, self.dtype)(y))
    y = layers.conv(self.out, 1, padding=0, dtype=self.dtype)(y)
    y = layers.batch_norm(train, self.dtype)(y)
    return x + y if self.stride == 1 and x.shape[-1] == self.out else y


class MobileNetV2(nn.Module):
  """Returns ``(logits, features)``; see the module docstring for keys."""

  num_classes: int
  width_mult: float = 0.5
  expand: int = 6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.conv(int(32 * self.width_mult), 3, 2, dtype=self.dtype, name="conv1")(
        x.astype(self.dtype))
    x = nn.relu(layers.batch_norm(train, self.dtype, name="bn1")(x))
    features = {"stem": x}
    taps = {1: 1, 2: 2, 4: 3, 6: 4}  # blocks[i] output -> stage number (the reference's f1..f4)
    for b, (t, c, n, s) in enumerate(SETTING):
      for i in range(n):
        x = InvertedResidual(int(c * self.width_mult), s if i == 0 else 1,
                             self.expand if t != 1 else 1, self.dtype,
                             name=f"blocks{b}_{i}")(x, train)
      if b in taps:
        features[f"stage{taps[b]}"] = x
        features[f"preact/stage{taps[b]}"] = x
    logits, tail = self.head(x, train)
    return logits, {**features, **tail}

  def head(self, x, train: bool = False):
    """The layers after the last stage: ``stage<last>`` map [B, H, W, C] -> ``(logits,
    features computed there)``."""
    last = int(1280 * self.width_mult) if self.width_mult > 1.0 else 1280
    x = layers.conv(last, 1, padding=0, dtype=self.dtype, name="conv2")(x)
    x = nn.relu(layers.batch_norm(train, self.dtype, name="bn2")(x))
    pooled = layers.global_avg_pool(x)
    logits = layers.TorchDense(self.num_classes, self.dtype, init="normal",
                               name="classifier")(pooled)
    return logits, {"pooled": pooled}


MODELS = {"MobileNetV2": dict(width_mult=0.5, expand=6)}
