"""VGG with BatchNorm of RepDistiller (models/vgg.py, the ``*_bn`` variants it uses as
vgg8/11/13/16/19): five blocks of conv3x3 (with bias) -> BN -> ReLU, 2x2 max-pools after
blocks 0, 1, 2 and, only for 64x64 inputs, 3 (as the reference); global average pool;
Linear(512, classes).

Features as RepDistiller's ``feat`` list (32x32 input): ``stem`` [B, 32, 32, 64] (block 0
after ReLU), ``stage1`` [B, 16, 16, 128], ``stage2`` [B, 8, 8, 256], ``stage3`` [B, 4, 4, 512],
``stage4`` [B, 4, 4, 512] (after ReLU), ``preact/stage1..4`` (before that ReLU), ``pooled``
[B, 512].
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models import layers

CFG = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class VGG(nn.Module):
  """Returns ``(logits, features)``; see the module docstring for keys."""

  cfg: Sequence[Sequence[int]]
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    height = x.shape[1]
    x = x.astype(self.dtype)
    features = {}
    for b, widths in enumerate(self.cfg):
      if b in (1, 2, 3) or (b == 4 and height == 64):
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      for i, w in enumerate(widths):
        x = layers.conv(w, 3, dtype=self.dtype, use_bias=True, name=f"block{b}_conv{i}")(x)
        x = layers.batch_norm(train, self.dtype, name=f"block{b}_bn{i}")(x)
        if i < len(widths) - 1:
          x = nn.relu(x)
      if b > 0:
        features[f"preact/stage{b}"] = x
      x = nn.relu(x)
      features["stem" if b == 0 else f"stage{b}"] = x
    logits, tail = self.head(x, train)
    return logits, {**features, **tail}

  def head(self, x, train: bool = False):
    """The layers after the last stage: ``stage<last>`` map [B, H, W, C] -> ``(logits,
    features computed there)``."""
    pooled = layers.global_avg_pool(x)
    logits = layers.TorchDense(self.num_classes, self.dtype, init="normal",
                               name="classifier")(pooled)
    return logits, {"pooled": pooled}


MODELS = {name: dict(cfg=cfg) for name, cfg in CFG.items()}
