"""The CIFAR ResNets of RepDistiller/mdistiller (models/resnet.py): resnet8..110, resnet8x4, resnet32x4.

Stem: conv3x3 (no bias) -> BN -> ReLU. Three stages of ``(depth - 2) // 6`` BasicBlocks
with widths ``filters[1:]`` and strides 1, 2, 2; a block gets a 1x1 conv + BN shortcut
when its stride or width changes. Global average pooling, then a Linear classifier.

Features (NHWC; for a 32x32 input and widths w1, w2, w3):
  ``stem`` [B, 32, 32, filters[0]], ``stage1`` [B, 32, 32, w1], ``stage2`` [B, 16, 16, w2],
  ``stage3`` [B, 8, 8, w3] (after the last ReLU of each stage), ``preact/stage1..3``
  (the same before that ReLU), ``pooled`` [B, w3].
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models import layers


class BasicBlock(nn.Module):
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    out = layers.conv(self.planes, 3, self.stride, dtype=self.dtype)(x)
    out = nn.relu(layers.batch_norm(train, self.dtype)(out))
    out = layers.conv(self.planes, 3, dtype=self.dtype)(out)
    out = layers.batch_norm(train, self.dtype)(out)
    if self.stride != 1 or x.shape[-1] != self.planes:
      x = layers.conv(self.planes, 1, self.stride, padding=0, dtype=self.dtype)(x)
      x = layers.batch_norm(train, self.dtype)(x)
    preact = out + x
    return nn.relu(preact), preact


class CifarResNet(nn.Module):
  """Returns ``(logits [B, num_classes], features)``; see the module docstring for keys."""

  depth: int
  filters: Sequence[int]
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if (self.depth - 2) % 6:
      raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {self.depth}")
    n = (self.depth - 2) // 6
    x = layers.conv(self.filters[0], 3, dtype=self.dtype)(x.astype(self.dtype))
    x = nn.relu(layers.batch_norm(train, self.dtype)(x))
    features = {"stem": x}
    for stage, (planes, stride) in enumerate(zip(self.filters[1:], (1, 2, 2)), start=1):
      for i in range(n):
        x, preact = BasicBlock(planes, stride if i == 0 else 1, self.dtype,
                               name=f"stage{stage}_block{i}")(x, train)
      features[f"stage{stage}"] = x
      features[f"preact/stage{stage}"] = preact
    logits, tail = self.head(x, train)
    return logits, {**features, **tail}

  def head(self, x, train: bool = False):
    """The layers after the last stage: ``stage<last>`` map [B, H, W, C] -> ``(logits,
    features computed there)``."""
    pooled = layers.global_avg_pool(x)
    return layers.TorchDense(self.num_classes, self.dtype, name="fc")(pooled), {"pooled": pooled}


_SMALL = (16, 16, 32, 64)
_X4 = (32, 64, 128, 256)
MODELS = {
    **{f"resnet{d}": dict(depth=d, filters=_SMALL) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": dict(depth=8, filters=_X4),
    "resnet32x4": dict(depth=32, filters=_X4),
}
