"""ShuffleNets of RepDistiller (models/ShuffleNetv1.py ``ShuffleV1``, models/ShuffleNetv2.py
``ShuffleV2``), with PyTorch's default initialisation as there.

ShuffleV1: conv1x1 (24) -> BN -> ReLU; stages of 4, 8, 4 bottlenecks (groups 3, widths 240,
480, 960; the first block of a stage has stride 2 and concatenates a 3x3/2 average-pooled
shortcut); global average pool; Linear(960).
ShuffleV2 (net size 1): conv1x1 (24) -> BN -> ReLU; stages of a down-sampling block and 3,
7, 3 split blocks (widths 116, 232, 464); conv1x1 (1024) -> BN -> ReLU; pool; Linear(1024).

Features as RepDistiller's ``feat`` list (32x32 input): ``stem`` [B, 32, 32, 24], ``stage1``
[B, 16, 16, c1], ``stage2`` [B, 8, 8, c2], ``stage3`` [B, 4, 4, c3] (each stage's output),
``preact/stage<k>`` (its last block before the final ReLU; for V2, the concatenation before
the channel shuffle, as the reference), ``pooled`` [B, c3] (V1) or [B, 1024] (V2).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models import layers

_INIT = layers.torch_default_conv_init


def _conv(features, kernel, stride=1, groups=1, dtype=jnp.float32, name=None):
  return layers.conv(features, kernel, stride, dtype=dtype, groups=groups, kernel_init=_INIT,
                     name=name)


class V1Bottleneck(nn.Module):
  out: int
  stride: int
  groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    mid = self.out // 4
    g = 1 if x.shape[-1] == 24 else self.groups
    y = _conv(mid, 1, groups=g, dtype=self.dtype)(x)
    y = nn.relu(layers.batch_norm(train, self.dtype)(y))
    y = layers.channel_shuffle(y, g)
    y = _conv(mid, 3, self.stride, groups=mid, dtype=self.dtype)(y)
    y = nn.relu(layers.batch_norm(train, self.dtype)(y))
    y = _conv(self.out, 1, groups=self.groups, dtype=self.dtype)(y)
    y = layers.batch_norm(train, self.dtype)(y)
    if self.stride == 2:
      res = nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                        count_include_pad=True)
      preact = jnp.concatenate([y, res], axis=-1)
    else:
      preact = y + x
    return nn.relu(preact), preact


class ShuffleNetV1(nn.Module):
  """Returns ``(logits, features)``; see the module docstring for keys."""

  num_classes: int
  out_planes: Sequence[int] = (240, 480, 960)
  num_blocks: Sequence[int] = (4, 8, 4)
  groups: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _conv(24, 1, dtype=self.dtype, name="conv1")(x.astype(self.dtype))
    x = nn.relu(layers.batch_norm(train, self.dtype, name="bn1")(x))
    features = {"stem": x}
    for stage, (out, n) in enumerate(zip(self.out_planes, self.num_blocks), start=1):
      for i in range(n):
        width = out - x.shape[-1] if i == 0 else out
        x, preact = V1Bottleneck(width, 2 if i == 0 else 1, self.groups, self.dtype,
                                 name=f"stage{stage}_block{i}")(x, train)
      features[f"stage{stage}"] = x
      features[f"preact/stage{stage}"] = preact
    logits, tail = self.head(x, train)
    return logits, {**features, **tail}

  def head(self, x, train: bool = False):
    """The layers after the last stage: ``stage<last>`` map [B, H, W, C] -> ``(logits,
    features computed there)``."""
    pooled = layers.global_avg_pool(x)
    return layers.TorchDense(self.num_classes, self.dtype, name="linear")(pooled), {"pooled": pooled}


class V2Block(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1] // 2
    x1, x2 = x[..., :c], x[..., c:]
    y = _conv(c, 1, dtype=self.dtype)(x2)
    y = nn.relu(layers.batch_norm(train, self.dtype)(y))
    y = _conv(c, 3, groups=c, dtype=self.dtype)(y)
    y = layers.batch_norm(train, self.dtype)(y)
    y = _conv(c, 1, dtype=self.dtype)(y)
    y = layers.batch_norm(train, self.dtype)(y)
    preact = jnp.concatenate([x1, y], axis=-1)
    out = layers.channel_shuffle(jnp.concatenate([x1, nn.relu(y)], axis=-1), 2)
    return out, preact


class V2DownBlock(nn.Module):
  out: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    mid, cin = self.out // 2, x.shape[-1]
    left = _conv(cin, 3, 2, groups=cin, dtype=self.dtype)(x)
    left = layers.batch_norm(train, self.dtype)(left)
    left = _conv(mid, 1, dtype=self.dtype)(left)
    left = nn.relu(layers.batch_norm(train, self.dtype)(left))
    right = _conv(mid, 1, dtype=self.dtype)(x)
    right = nn.relu(layers.batch_norm(train, self.dtype)(right))
    right = _conv(mid, 3, 2, groups=mid, dtype=self.dtype)(right)
    right = layers.batch_norm(train, self.dtype)(right)
    right = _conv(mid, 1, dtype=self.dtype)(right)
    right = nn.relu(layers.batch_norm(train, self.dtype)(right))
    return layers.channel_shuffle(jnp.concatenate([left, right], axis=-1), 2)


class ShuffleNetV2(nn.Module):
  """Returns ``(logits, features)``; see the module docstring for keys."""

  num_classes: int
  out_channels: Sequence[int] = (116, 232, 464, 1024)
  num_blocks: Sequence[int] = (3, 7, 3)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _conv(24, 1, dtype=self.dtype, name="conv1")(x.astype(self.dtype))
    x = nn.relu(layers.batch_norm(train, self.dtype, name="bn1")(x))
    features = {"stem": x}
    for stage, (out, n) in enumerate(zip(self.out_channels[:3], self.num_blocks), start=1):
      x = V2DownBlock(out, self.dtype, name=f"stage{stage}_down")(x, train)
      for i in range(n):
        x, preact = V2Block(self.dtype, name=f"stage{stage}_block{i}")(x, train)
      features[f"stage{stage}"] = x
      features[f"preact/stage{stage}"] = preact
    logits, tail = self.head(x, train)
    return logits, {**features, **tail}

  def head(self, x, train: bool = False):
    """The layers after the last stage: ``stage<last>`` map [B, H, W, C] -> ``(logits,
    features computed there)``."""
    x = _conv(self.out_channels[3], 1, dtype=self.dtype, name="conv2")(x)
    x = nn.relu(layers.batch_norm(train, self.dtype, name="bn2")(x))
    pooled = layers.global_avg_pool(x)
    return layers.TorchDense(self.num_classes, self.dtype, name="linear")(pooled), {"pooled": pooled}


MODELS_V1 = {"ShuffleV1": {}}
MODELS_V2 = {"ShuffleV2": {}}
