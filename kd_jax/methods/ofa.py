"""OFA (Hao et al., NeurIPS 2023, "One-for-All: bridge the gap between heterogeneous
architectures in knowledge distillation"; Hao840/OFAKD ``distillers/ofa.py``): each of the
student's stages is projected into the logit space by a projector made for its kind of
feature, and every projection, and the student's own logits, learn the teacher's logits
through OFA's adaptive target enhancement (``losses.ofa``). Any pair: CNN -> ViT,
ViT -> CNN, CNN -> CNN, ViT -> ViT.

Projectors (``distillers/ofa.py``; PyTorch layers as ``distillers/utils.py`` and timm 0.6.5
define them, initialised by its ``init_weights``): a CNN stage k of n: ``n - k`` ``SepConv``
blocks (each downsamples by 2, doubling the channels, the last to ``max(D_s, D_t)``; the last
stage: a 1x1 convolution to it), global average pooling, Linear to the classes; a ViT stage
k: its patch tokens merged (``PatchMerging``) down to a 7x7 grid where they are finer,
``max(n - k, 1)`` transformer blocks (4 heads, no qkv bias, LayerNorm eps 1e-5), its class
token, Linear to the classes. ``D_s``, ``D_t``: the widths of the student's and the
teacher's pooled features. The reference numbers stages for a 4-stage network (``4 -
stage``); kd_jax counts the student's stages (3 for the CIFAR ResNets).
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.methods.base import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Context, Method, register
from kd_jax.models import layers, vit

# init_weights: Linear trunc_normal_(std=.02) (bounds +-2: in effect a normal), bias 0;
# Conv2d kaiming_normal_(fan_out, relu); BatchNorm 1 and 0.
_linear = dict(kernel_init=nn.initializers.normal(0.02), bias_init=nn.initializers.zeros)


class SepConv(nn.Module):
  """``SepConv(C_in, C_out)``: depthwise 3x3 stride 2 -> 1x1 -> BN -> ReLU -> depthwise 3x3
  -> 1x1 to C_out -> BN -> ReLU; no biases. [B, H, W, C_in] -> [B, H/2, W/2, C_out]."""

  features: int

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    x = layers.conv(c, 3, 2, 1, None, groups=c, name="op_0")(x)
    x = layers.conv(c, 1, padding=0, dtype=None, name="op_1")(x)
    x = nn.relu(layers.batch_norm(train, None, name="op_2")(x))
    x = layers.conv(c, 3, 1, 1, None, groups=c, name="op_4")(x)
    x = layers.conv(self.features, 1, padding=0, dtype=None, name="op_5")(x)
    return nn.relu(layers.batch_norm(train, None, name="op_6")(x))


class PatchMerging(nn.Module):
  """Swin's ``PatchMerging`` as OFA's utils define it: [B, H*W, C] -> [B, H/2*W/2, out]: the
  2x2 neighbours concatenated (x0 = (0, 0), x1 = (1, 0), x2 = (0, 1), x3 = (1, 1)),
  LayerNorm(4C) (eps 1e-5), Linear without bias, then ``act`` (GELU or none)."""

  resolution: int
  features: int
  gelu: bool

  @nn.compact
  def __call__(self, x):
    b, l, c = x.shape
    h = self.resolution
    if l != h * h or h % 2:
      raise ValueError(f"PatchMerging takes an even square grid of {h}x{h} tokens, got {l}")
    x = x.reshape(b, h, h, c)
    x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                         x[:, 1::2, 1::2]], axis=-1).reshape(b, -1, 4 * c)
    x = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name="norm")(x)
    x = nn.Dense(self.features, use_bias=False, kernel_init=_linear["kernel_init"],
                 name="reduction")(x)
    return vit.gelu(x) if self.gelu else x


class CNNProjector(nn.Module):
  """A CNN stage's projector: ``blocks`` SepConvs (or, with none, a 1x1 convolution), global
  average pooling, Linear to ``num_classes``."""

  blocks: int
  width: int          # max(D_s, D_t)
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    if self.blocks:
      for i in range(self.blocks):
        out = self.width if i == self.blocks - 1 else c * 2
        x = SepConv(out, name=f"sepconv_{i}")(x, train)
        c *= 2
    else:
      x = layers.conv(self.width, 1, padding=0, dtype=None, use_bias=True, name="conv")(x)
    return nn.Dense(self.num_classes, **_linear, name="fc")(layers.global_avg_pool(x))


class ViTProjector(nn.Module):
  """A ViT stage's projector: its patch tokens merged to a 7x7 grid (``merges`` times; the
  prefix tokens set aside and put back in front), ``blocks`` transformer blocks, the first
  prefix token (the class token), Linear to ``num_classes``."""

  prefix: int
  merges: int
  blocks: int
  width: int          # D_s
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    tokens, patches = x[:, :self.prefix], x[:, self.prefix:]
    grid = int(round(patches.shape[1] ** 0.5))
    for i in range(self.merges):
      patches = PatchMerging(grid // 2 ** i, self.width,
                             gelu=i == 0 or i != self.merges - 1, name=f"merge_{i}")(patches)
    x = jnp.concatenate([tokens, patches], axis=1) if self.prefix else patches
    for i in range(self.blocks):
      x = vit.Block(num_heads=4, dtype=None, qkv_bias=False, norm_eps=1e-5, name=f"block_{i}")(x, train)
    feature = x[:, :self.prefix].reshape(x.shape[0], -1) if self.prefix else jnp.mean(x, 1)
    return nn.Dense(self.num_classes, **_linear, name="fc")(feature)


class OFAAdapter(nn.Module):
  """One projector per selected stage: [stage maps or tokens..., pooled, logits] ->
  [projected logits [B, K] per stage], the teacher's side unchanged."""

  stages: Sequence[int]

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    *stage_maps, pooled_s, logits_s = s_maps
    n = len(stage_maps)
    chosen = self.stages or tuple(range(1, n + 1))
    if any(not 1 <= k <= n for k in chosen):
      raise ValueError(f"OFA stages {tuple(chosen)}: the student has stages 1..{n}")
    d_s, d_t = pooled_s.shape[-1], t_maps[0].shape[-1]
    k = logits_s.shape[-1]
    out = []
    for stage in chosen:
      x = stage_maps[stage - 1]
      if x.ndim == 4:
        blocks = n - stage
        out.append(CNNProjector(blocks, max(d_s, d_t), k, name=f"stage{stage}")(x, train))
      else:
        b, t, _ = x.shape
        grid = vit.patch_map(x).shape[1]
        prefix = t - grid * grid
        if prefix > 1:
          raise ValueError("OFA reads one class token of a ViT student (the reference's "
                           "'todo: token_num > 1'); a distilled ViT has two")
        merges = max(int(math.log2(grid / 7)), 0)
        out.append(ViTProjector(prefix, merges, max(n - stage, 1), d_s, k,
                                name=f"stage{stage}")(x, train))
    return out, list(t_maps)


@register("ofa")
class OFA(Method):
  """OFAKD's defaults (``train.py``): eps 1 for every stage and the logits (one value: all;
  else one per stage, then the logits'), every stage (``stages=()``; the reference's
  ``--ofa-stage 1 2 3 4`` on a 4-stage network), temperature 1, the stage terms and the
  logit term each at weight 1 (``--ofa-loss-weight``, ``--kd-loss-weight``)."""
  eps: tuple = (1.0,)
  stages: tuple = ()
  temperature: float = 1.0
  stage_weight: float = 1.0
  logit_weight: float = 1.0
  ranges = {"eps": POSITIVE, "stages": AT_LEAST_ONE, "temperature": POSITIVE,
            "stage_weight": NON_NEGATIVE, "logit_weight": NON_NEGATIVE}
  needs_labels = True
  reads = ("stages", "pooled", "logits")
  teacher_reads = "pooled"

  def adapter(self):
    return OFAAdapter(tuple(self.stages))

  def loss(self, ctx: Context):
    projected = ctx.s_maps
    eps = tuple(self.eps)
    if len(eps) == 1:
      eps = eps * (len(projected) + 1)
    if len(eps) != len(projected) + 1:
      raise ValueError(f"OFA needs one eps per stage ({len(projected)}) and one for the "
                       f"logits, or a single one; got {len(self.eps)}")
    zt, y = ctx.teacher.logits, ctx.batch["label"]
    ofa = lambda z, e: losses.ofa(z, zt, y, eps=e, temperature=self.temperature)
    stage_terms = sum(ofa(p, e) for p, e in zip(projected, eps[:-1]))
    return self.stage_weight * stage_terms + self.logit_weight * ofa(ctx.student.logits, eps[-1])
