"""Wide ResNets of RepDistiller (models/wrn.py): wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2.

Pre-activation blocks (BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus the input or,
when the width changes, a 1x1 conv of the activated input); widths 16, 16k, 32k, 64k;
``(depth - 4) // 6`` blocks a stage with strides 1, 2, 2; final BN -> ReLU -> global
average pool -> Linear.

Features as RepDistiller's ``feat`` list (for 32x32 input, widen factor k):
  ``stem`` [B, 32, 32, 16] (conv1 output), ``stage1`` [B, 32, 32, 16k], ``stage2``
  [B, 16, 16, 32k], ``stage3`` [B, 8, 8, 64k] (block outputs: pre-activation blocks have no
  ReLU at the end); ``preact/stage1`` and ``preact/stage2`` are the next stage's first BN
  applied to them, ``preact/stage3`` the final BN (the reference's ``preact=True`` features),
  ``pooled`` [B, 64k].
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models import layers


class WRNBlock(nn.Module):
  """Returns ``(output, bn1(input))``; the second is the previous stage's preact feature."""

  out_planes: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    bn_in = layers.batch_norm(train, self.dtype, name="bn1")(x)
    act = nn.relu(bn_in)
    out = layers.conv(self.out_planes, 3, self.stride, dtype=self.dtype, name="conv1")(act)
    out = nn.relu(layers.batch_norm(train, self.dtype, name="bn2")(out))
    out = layers.conv(self.out_planes, 3, dtype=self.dtype, name="conv2")(out)
    if x.shape[-1] == self.out_planes:
      shortcut = x
    else:  # The reference's convShortcut reads the activated input.
      shortcut = layers.conv(self.out_planes, 1, self.stride, padding=0, dtype=self.dtype,
                             name="shortcut")(act)
    return shortcut + out, bn_in


class WideResNet(nn.Module):
  """Returns ``(logits, features)``; see the module docstring for keys."""

  depth: int
  widen_factor: int
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if (self.depth - 4) % 6:
      raise ValueError(f"WRN depth must be 6n+4, got {self.depth}")
    n = (self.depth - 4) // 6
    k = self.widen_factor
    x = layers.conv(16, 3, dtype=self.dtype, name="conv1")(x.astype(self.dtype))
    features = {"stem": x}
    for stage, (planes, stride) in enumerate(zip((16 * k, 32 * k, 64 * k), (1, 2, 2)), start=1):
      for i in range(n):
        x, bn_in = WRNBlock(planes, stride if i == 0 else 1, self.dtype,
                            name=f"stage{stage}_block{i}")(x, train)
        if i == 0 and stage > 1:
          features[f"preact/stage{stage - 1}"] = bn_in
      features[f"stage{stage}"] = x
    logits, tail = self.head(x, train)
    return logits, {**features, **tail}

  def head(self, x, train: bool = False):
    """The layers after the last stage: ``stage<last>`` map [B, H, W, C] -> ``(logits,
    features computed there)``."""
    x = layers.batch_norm(train, self.dtype, name="bn_final")(x)
    pooled = layers.global_avg_pool(nn.relu(x))
    logits = layers.TorchDense(self.num_classes, self.dtype, init="zero_bias", name="fc")(pooled)
    return logits, {"preact/stage3": x, "pooled": pooled}


MODELS = {f"wrn_{d}_{k}": dict(depth=d, widen_factor=k) for d in (16, 40) for k in (1, 2)}
