"""ImageNet ResNets in torchvision's layout: resnet18, resnet34 (BasicBlock), resnet50
(Bottleneck, stride on the 3x3 conv: "ResNet v1.5"); and ``ResNet50``, the CIFAR variant of
RepDistiller (models/resnetv2.py): the same blocks after a conv3x3/1 stem without max-pool
(features then: ``stem`` [B, 32, 32, 64], ``stage1..4`` at 32, 16, 8, 4 pixels).

Stem: conv7x7/2 (no bias) -> BN -> ReLU -> maxpool 3x3/2. Four stages (64, 128, 256, 512
planes; strides 1, 2, 2, 2; Bottleneck outputs 4x planes), a 1x1 conv + BN shortcut when
stride or width changes, global average pooling, Linear classifier.

Features for a 224x224 input (resnet18/34 widths; resnet50: x4 on stages):
  ``stem`` [B, 112, 112, 64] (after ReLU, before the max-pool), ``stage1`` [B, 56, 56, 64],
  ``stage2`` [B, 28, 28, 128], ``stage3`` [B, 14, 14, 256], ``stage4`` [B, 7, 7, 512]
  (after each stage's last ReLU), ``preact/stage1..4`` (before it), ``pooled`` [B, 512].
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models import layers


class _Shortcut(nn.Module):
  features: int
  stride: int
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    if self.stride == 1 and x.shape[-1] == self.features:
      return x
    x = layers.conv(self.features, 1, self.stride, padding=0, dtype=self.dtype, name="conv")(x)
    return layers.batch_norm(train, self.dtype, name="bn")(x)


class BasicBlock(nn.Module):
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    out = layers.conv(self.planes, 3, self.stride, dtype=self.dtype)(x)
    out = nn.relu(layers.batch_norm(train, self.dtype)(out))
    out = layers.conv(self.planes, 3, dtype=self.dtype)(out)
    out = layers.batch_norm(train, self.dtype)(out)
    preact = out + _Shortcut(self.planes, self.stride, self.dtype, name="shortcut")(x, train)
    return nn.relu(preact), preact


class Bottleneck(nn.Module):
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    out = layers.conv(self.planes, 1, padding=0, dtype=self.dtype)(x)
    out = nn.relu(layers.batch_norm(train, self.dtype)(out))
    out = layers.conv(self.planes, 3, self.stride, dtype=self.dtype)(out)
    out = nn.relu(layers.batch_norm(train, self.dtype)(out))
    out = layers.conv(self.planes * 4, 1, padding=0, dtype=self.dtype)(out)
    out = layers.batch_norm(train, self.dtype)(out)
    preact = out + _Shortcut(self.planes * 4, self.stride, self.dtype, name="shortcut")(x, train)
    return nn.relu(preact), preact


class ImageNetResNet(nn.Module):
  """Returns ``(logits [B, num_classes], features)``; see the module docstring for keys."""

  blocks: Sequence[int]
  bottleneck: bool
  num_classes: int
  dtype: Any = jnp.float32
  cifar_stem: bool = False  # conv3x3/1 and no max-pool (RepDistiller's resnetv2.py ResNet50).

  @nn.compact
  def __call__(self, x, train: bool = False):
    block = Bottleneck if self.bottleneck else BasicBlock
    if self.cifar_stem:
      x = layers.conv(64, 3, dtype=self.dtype)(x.astype(self.dtype))
    else:
      x = layers.conv(64, 7, 2, padding=3, dtype=self.dtype)(x.astype(self.dtype))
    x = nn.relu(layers.batch_norm(train, self.dtype)(x))
    features = {"stem": x}
    if not self.cifar_stem:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (n, planes, stride) in enumerate(
        zip(self.blocks, (64, 128, 256, 512), (1, 2, 2, 2)), start=1):
      for i in range(n):
        x, preact = block(planes, stride if i == 0 else 1, self.dtype,
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


MODELS = {
    "resnet18": dict(blocks=(2, 2, 2, 2), bottleneck=False),
    "resnet34": dict(blocks=(3, 4, 6, 3), bottleneck=False),
    "resnet50": dict(blocks=(3, 4, 6, 3), bottleneck=True),
    "ResNet50": dict(blocks=(3, 4, 6, 3), bottleneck=True, cifar_stem=True),
}
