"""Vision transformers: timm's ``VisionTransformer`` and DeiT's ``VisionTransformerDistilled``
(Dosovitskiy et al., ICLR 2021; Touvron et al., ICML 2021), parameter for parameter.

Patch embedding (a ``patch_size`` convolution with stride ``patch_size``, bias), the class
token (and, distilled, the distillation token) prepended, a learned position embedding
added; ``depth`` pre-norm blocks (LayerNorm eps 1e-6 -> multi-head self-attention with a
fused qkv projection -> residual; LayerNorm -> MLP with exact GELU -> residual), stochastic
depth ``drop_path`` rising linearly over the blocks (training only); a final LayerNorm; the
classifier ``head`` on the class token. A distilled model also has ``head_dist`` on the
distillation token; its ``logits`` are the class head's in training and the mean of both
heads in inference, as timm's ``distilled_training`` and DeiT's evaluation.

Features (tokens [B, T, D]; T = prefix tokens (1, or 2 distilled) + (H/p)(W/p) patches in
row-major order): ``stem`` (embedded tokens, before the first block), ``block1..depth``
(each block's output), ``stage1..4`` (the blocks OFA's ``stage_info`` names for a 12-block
ViT: 2, 4, 10 and 12; ``stage_blocks``), ``tokens`` (after the final norm), ``pooled`` [B, D]
(what the classifier reads: the class token, or the mean of both tokens when distilled, as
timm's ``pre_logits``); distilled also ``logits/class`` and ``logits/dist`` [B, K] (the two
heads). ``prefix_tokens`` (a class attribute of the built model) says how many tokens
precede the patches.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.models import layers

# timm's init_weights_vit_timm: Linear weights trunc_normal_(std=.02) with bounds +-2
# (absolute: +-100 std, so in effect a normal), biases zero; LayerNorm 1 and 0.
_linear_init = nn.initializers.normal(0.02)


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=_linear_init,
                  bias_init=nn.initializers.zeros, name=name)


def _layer_norm(dtype: Any, name: str, eps: float = 1e-6) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=eps, dtype=dtype, use_fast_variance=False, name=name)


class PatchConv(nn.Module):
  """A convolution with kernel = stride = p on [B, H, W, C] -> [B, (H/p)(W/p), D], computed as
  one matmul over the patches; the kernel is stored [p, p, C, D] (HWIO, as a convolution's)
  and initialised as ``torch.nn.Conv2d``'s."""

  patch_size: int
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f"a {h}x{w} image does not divide into {p}x{p} patches")
    fan_in = p * p * c
    kernel = self.param("kernel", layers.torch_default_conv_init, (p, p, c, self.features))
    bias = self.param("bias", layers.torch_linear_bias_init(fan_in), (self.features,))
    patches = x.reshape(b, h // p, p, w // p, p, c).swapaxes(2, 3)
    patches = patches.reshape(b, (h // p) * (w // p), fan_in)
    return patches @ kernel.reshape(fan_in, -1).astype(self.dtype) + bias.astype(self.dtype)


class PatchEmbed(nn.Module):
  """timm's ``PatchEmbed`` (its ``proj``: ``PatchConv``): [B, H, W, C] -> [B, N, D]."""

  patch_size: int
  embed_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return PatchConv(self.patch_size, self.embed_dim, self.dtype, name="proj")(x)


def _split_heads(qkv: jax.Array, num_heads: int) -> jax.Array:
  """[B, T, 3D] (timm's fused qkv: [3, heads, D/heads] per token) -> [3, B, heads, T, D/heads].
  Heads next to the batch, as timm permutes: XLA:CPU runs the two batched matmuls 3x faster
  on that layout than on [B, T, heads, hd]."""
  b, t, d3 = qkv.shape
  return jnp.transpose(qkv.reshape(b, t, 3, num_heads, d3 // (3 * num_heads)), (2, 0, 3, 1, 4))


def _attend(qkv: jax.Array, num_heads: int) -> tuple[jax.Array, tuple]:
  q, k, v = _split_heads(qkv, num_heads)
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bhqd,bhkd->bhqk", q * scale, k)
  weights = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
  out = jnp.einsum("bhqk,bhkd->bhqd", weights.astype(qkv.dtype), v)
  return out, (q, k, v, weights)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def attention(qkv: jax.Array, num_heads: int) -> jax.Array:
  """Multi-head self-attention of timm's fused ``qkv`` [B, T, 3D]: softmax(q k^T / sqrt(hd)) v
  per head, [B, heads, T, hd]; the softmax in float32 (or wider).

  Its gradient is autodiff's arithmetic, written out: the softmax's backward as
  ``w * (dw - sum(dw * w))`` and the three gradients written into one [B, T, 3D] array.
  XLA:CPU, left to autodiff, padded each of dq, dk, dv to the size of all three and added
  them, and materialised 1/sum broadcast to [B, heads, T, T] (docs/speed.md: one DeiT-Ti
  attention, batch 32, forward and backward). A custom VJP: reverse mode only (``jax.jvp``
  through a ViT raises)."""
  return _attend(qkv, num_heads)[0]


def _attention_fwd(qkv, num_heads):
  return _attend(qkv, num_heads)


def _attention_bwd(num_heads, residuals, d_out):
  del num_heads
  q, k, v, weights = residuals
  dtype = q.dtype
  d_v = jnp.einsum("bhqk,bhqd->bhkd", weights.astype(dtype), d_out)
  d_weights = jnp.einsum("bhqd,bhkd->bhqk", d_out, v).astype(weights.dtype)
  d_logits = weights * (d_weights - jnp.sum(d_weights * weights, axis=-1, keepdims=True))
  d_logits = d_logits.astype(dtype)
  scale = q.shape[-1] ** -0.5
  d_q = jnp.einsum("bhqk,bhkd->bhqd", d_logits, k) * scale
  d_k = jnp.einsum("bhqk,bhqd->bhkd", d_logits, q * scale)
  b, _, t, _ = q.shape
  d_qkv = jnp.transpose(jnp.stack([d_q, d_k, d_v]), (1, 3, 0, 2, 4))  # [B, T, 3, heads, hd]
  return (d_qkv.reshape(b, t, -1),)


attention.defvjp(_attention_fwd, _attention_bwd)


class Attention(nn.Module):
  """timm's ``Attention``: qkv = Linear(D, 3D) split as [3, heads, D/heads]; softmax(q k^T /
  sqrt(D/heads)) v, heads concatenated, Linear(D, D) (``attention``)."""

  num_heads: int
  dtype: Any = jnp.float32
  qkv_bias: bool = True

  @nn.compact
  def __call__(self, x):
    b, t, d = x.shape
    qkv = nn.Dense(3 * d, dtype=self.dtype, use_bias=self.qkv_bias, kernel_init=_linear_init,
                   bias_init=nn.initializers.zeros, name="qkv")(x)
    out = attention(qkv, self.num_heads)
    return _dense(d, self.dtype, "proj")(jnp.transpose(out, (0, 2, 1, 3)).reshape(b, t, d))


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU as PyTorch's ``nn.GELU()``: ``x / 2 * (1 + erf(x / sqrt(2)))`` (jax.nn.gelu's
  erfc form ran 2.7x slower on XLA:CPU)."""
  return x * 0.5 * (1.0 + jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


class Mlp(nn.Module):
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = gelu(_dense(self.hidden, self.dtype, "fc1")(x))
    return _dense(x.shape[-1], self.dtype, "fc2")(y)


def drop_path(x: jax.Array, rate: float, module: nn.Module, train: bool) -> jax.Array:
  """timm's ``DropPath`` (stochastic depth): in training, each example's branch is zeroed
  with probability ``rate`` and the kept ones scaled by 1 / (1 - rate) ('dropout' rng)."""
  if not train or rate == 0.0:
    return x
  keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class Block(nn.Module):
  """timm's pre-norm ``Block``: x + attn(norm1(x)), then + mlp(norm2(x)). A ViT's: qkv bias,
  LayerNorm eps 1e-6; timm 0.6.5's default Block (OFA's projectors): no qkv bias, eps 1e-5."""

  num_heads: int
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  qkv_bias: bool = True
  norm_eps: float = 1e-6

  @nn.compact
  def __call__(self, x, train: bool):
    y = Attention(self.num_heads, self.dtype, self.qkv_bias, name="attn")(
        _layer_norm(self.dtype, "norm1", self.norm_eps)(x))
    x = x + drop_path(y, self.drop_path, self, train)
    y = Mlp(int(x.shape[-1] * self.mlp_ratio), self.dtype, name="mlp")(
        _layer_norm(self.dtype, "norm2", self.norm_eps)(x))
    return x + drop_path(y, self.drop_path, self, train)


class VisionTransformer(nn.Module):
  """Returns ``(logits [B, num_classes], features)``; see the module docstring for keys."""

  num_classes: int
  patch_size: int = 16
  embed_dim: int = 192
  depth: int = 12
  num_heads: int = 3
  mlp_ratio: float = 4.0
  distilled: bool = False
  drop_path: float = 0.0
  stage_blocks: Sequence[int] = (2, 4, 10, 12)
  dtype: Any = jnp.float32

  @property
  def prefix_tokens(self) -> int:
    return 2 if self.distilled else 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = PatchEmbed(self.patch_size, self.embed_dim, self.dtype, name="patch_embed")(
        x.astype(self.dtype))
    b, n, d = x.shape
    prefix = [self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, d))]
    if self.distilled:
      prefix.append(self.param("dist_token", _linear_init, (1, 1, d)))
    pos = self.param("pos_embed", _linear_init, (1, self.prefix_tokens + n, d))
    x = jnp.concatenate([jnp.broadcast_to(t.astype(self.dtype), (b, 1, d)) for t in prefix]
                        + [x], axis=1) + pos.astype(self.dtype)
    features = {"stem": x}
    for i in range(self.depth):
      rate = self.drop_path * i / max(self.depth - 1, 1)  # timm's linspace(0, rate, depth)
      x = Block(self.num_heads, self.mlp_ratio, rate, self.dtype, name=f"blocks_{i}")(x, train)
      features[f"block{i + 1}"] = x
    for k, i in enumerate(self.stage_blocks, start=1):
      features[f"stage{k}"] = features[f"block{i}"]
    logits, tail = self.head(x, train)
    return logits, {**features, **tail}

  def head(self, x, train: bool = False):
    """The layers after the last block: tokens [B, T, D] -> ``(logits, features computed
    there)``: the final norm, the class (and distillation) token, the classifier(s)."""
    x = _layer_norm(self.dtype, "norm")(x)
    cls_token = x[:, 0]
    logits = _dense(self.num_classes, self.dtype, "head")(cls_token)
    if not self.distilled:
      return logits, {"tokens": x, "pooled": cls_token}
    dist_token = x[:, 1]
    dist_logits = _dense(self.num_classes, self.dtype, "head_dist")(dist_token)
    out = logits if train else (logits + dist_logits) / 2
    return out, {"tokens": x, "pooled": (cls_token + dist_token) / 2,
                 "logits/class": logits, "logits/dist": dist_logits}


def patch_map(tokens: jax.Array) -> jax.Array:
  """A ViT's tokens [B, T, D] as the map of its patches [B, s, s, D] (row-major, as the patch
  embedding lays them out), the prefix tokens dropped: s = floor(sqrt(T)), the prefix T - s^2
  (1 or 2 for the zoo's ViTs: square patch grids). A map [B, H, W, C] is returned as is."""
  if tokens.ndim == 4:
    return tokens
  b, t, d = tokens.shape
  s = int(t ** 0.5)
  while (s + 1) ** 2 <= t:
    s += 1
  if not 0 <= t - s * s <= 2:
    raise ValueError(f"{t} tokens are not 1 or 2 prefix tokens and a square grid of patches")
  return tokens[:, t - s * s:].reshape(b, s, s, d)


_TINY = dict(embed_dim=192, depth=12, num_heads=3)
_SMALL = dict(embed_dim=384, depth=12, num_heads=6)
_BASE = dict(embed_dim=768, depth=12, num_heads=12)
# DeiT's recipe trains with stochastic depth 0.1 (its main.py ``--drop-path``).
_DEIT = dict(patch_size=16, drop_path=0.1)
MODELS = {
    **{f"deit_{size}{tag}_patch16_224": dict(**_DEIT, **widths, distilled=bool(tag))
       for size, widths in (("tiny", _TINY), ("small", _SMALL), ("base", _BASE))
       for tag in ("", "_distilled")},
    # DeiT-Ti's widths on 4x4 patches of a 32x32 image (64 patches): CIFAR.
    **{f"vit_tiny{tag}_patch4_32": dict(patch_size=4, **_TINY, distilled=bool(tag))
       for tag in ("", "_distilled")},
    # 2x2 patches of the 8x8 digits (16 patches), 4 blocks of width 64: stages 1..4 = blocks 1..4.
    **{f"vit_micro{tag}_patch2_8": dict(patch_size=2, embed_dim=64, depth=4, num_heads=2,
                                        stage_blocks=(1, 2, 3, 4), distilled=bool(tag))
       for tag in ("", "_distilled")},
}
