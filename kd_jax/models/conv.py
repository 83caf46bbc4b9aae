"""The zoo's convolution: on CPU, matmuls over patches of a few images at a time; elsewhere
XLA's native one.

XLA:CPU computes a convolution's weight gradient as a convolution whose kernel is the whole
output map, at a few GFLOP/s, and its forward convolution with few channels (64 at 32x32)
at about half the speed of its matmuls. On CPU, ``conv_general_dilated`` computes, per
chunk of images whose patches fit the L3 cache (``_chunk``), ``patches [c*H*W, kh*kw*C_in]
x kernel [kh*kw*C_in, C_out]`` for the forward, the same with the flipped kernel for the
input gradient (stride 1; strided: ``dy x kernel^T`` with each tap placed back by interior
padding, 2.5x faster than XLA's transpose for ResNet's 3x3 stride-2 at 32x32), and
``patches^T x dy`` summed over the chunks for the weight gradient. The patches are one
gather, which XLA fuses; where the whole batch's patches fit one chunk there is no loop.
1x1 stride-1 convolutions are one matmul over all pixels for each of the three products.
Large 3x3 stride-1 float32 convolutions (CIFAR ResNets' 64-256 channels at batch 64; all
three products) take Winograd's F(2x2, 3x3) instead (``kd_jax.models.winograd``: 2.25x fewer
multiply-adds). Grouped convolutions keep XLA's
forward and input gradient, with a per-tap weight gradient (a multiply-reduce for depthwise
ones). On GPU and TPU, whose convolution libraries are fast, it is
``lax.conv_general_dilated`` itself.

``KD_JAX_CONV=native`` (environment) turns the CPU path off, ``KD_JAX_CONV=patches`` only
its Winograd part, e.g. to compare.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kd_jax.models import winograd

_NHWC = ("NHWC", "HWIO", "NHWC")


_NATIVE = [False]  # Set while ``native()`` is entered.


@contextlib.contextmanager
def native():
  """Convolutions traced inside take XLA's own path on every backend: what XLA's cost
  analysis counts (the CPU path's chunked matmuls are loops it counts once)."""
  _NATIVE[0], old = True, _NATIVE[0]
  try:
    yield
  finally:
    _NATIVE[0] = old


def use_patch_matmuls() -> bool:
  """Whether convolutions traced now take the CPU path (the default backend is CPU,
  ``KD_JAX_CONV`` is not ``native`` and ``native()`` is not entered)."""
  return (jax.default_backend() == "cpu" and os.environ.get("KD_JAX_CONV", "") != "native"
          and not _NATIVE[0])


def use_winograd() -> bool:
  """Whether the CPU path's 3x3 stride-1 float32 convolutions use Winograd's F(2x2, 3x3)
  (``kd_jax.models.winograd``): yes unless ``KD_JAX_CONV`` is ``patches`` (or ``native``)."""
  return use_patch_matmuls() and os.environ.get("KD_JAX_CONV", "") != "patches"


def _native(x, w, strides, padding, groups):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC,
                                  feature_group_count=groups)


# Patches of this many bytes per chunk of images stay in the CPU's L3 cache while their
# matmul reads them (measured on the 2-core EPYC: 4.7 MB chunks ran 64->64 3x3 convolutions at
# 32x32 ~1.2x faster forward and ~2.4x faster for the weight gradient than whole-batch ones).
_PATCH_BYTES = 5 * 2**20


def _chunk(n: int, rows: int, cols: int) -> int:
  """The largest divisor of the batch ``n`` whose patches (``rows`` x ``cols`` float32 per
  image) fit ``_PATCH_BYTES``; at least 1."""
  c = max(1, min(n, _PATCH_BYTES // max(1, rows * cols * 4)))
  while n % c:
    c -= 1
  return c


def _out_size(size: int, k: int, s: int) -> int:
  return (size - k) // s + 1


@functools.lru_cache(maxsize=None)
def _patch_indices(kernel, strides, out_hw) -> np.ndarray:
  """``[H_out, W_out, kh, kw, 2]``: the (row, column) of each tap of each output position."""
  (kh, kw), (sh, sw), (ho, wo) = kernel, strides, out_hw
  rows = np.arange(ho)[:, None, None, None] * sh + np.arange(kh)[:, None]  # [ho, 1, kh, 1]
  cols = np.arange(wo)[:, None, None] * sw + np.arange(kw)  # [wo, 1, kw]
  indices = np.stack(np.broadcast_arrays(rows, cols), axis=-1).astype(np.int32)
  indices.setflags(write=False)  # Shared by every trace (lru_cache).
  return indices


# Output [c, ho, wo, kh, kw, C]: the image and channel axes of the operand are kept whole.
_PATCH_GATHER = lax.GatherDimensionNumbers(offset_dims=(0, 5), collapsed_slice_dims=(1, 2),
                                           start_index_map=(1, 2))


def _patches(xp: jax.Array, kernel, strides, out_hw) -> jax.Array:
  """``[c, H_pad, W_pad, C]`` -> ``[c * H_out * W_out, kh * kw * C]`` (tap-major columns)."""
  c, _, _, ci = xp.shape
  # One gather with constant indices (what ``xp[:, rows, cols, :]`` lowers to, without its
  # tracing cost): XLA:CPU fuses it; sliced taps it copies twice.
  patches = lax.gather(xp, _patch_indices(tuple(kernel), tuple(strides), tuple(out_hw)),
                       _PATCH_GATHER, (c, 1, 1, ci), indices_are_sorted=False,
                       unique_indices=False, mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
  return patches.reshape(-1, kernel[0] * kernel[1] * ci)


def _pad(x, padding):
  return jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))


def im2col_conv(x: jax.Array, w: jax.Array, strides, padding) -> jax.Array:
  """NHWC x HWIO -> NHWC convolution (``groups`` = 1) as one patches x kernel matmul per chunk
  of images (``lax.map`` over ``_chunk`` images), accumulated in float32."""
  xp = _pad(x, padding)
  n, hp, wp, ci = xp.shape
  kh, kw, _, co = w.shape
  ho, wo = _out_size(hp, kh, strides[0]), _out_size(wp, kw, strides[1])
  c = _chunk(n, ho * wo, kh * kw * ci)
  wm = w.reshape(kh * kw * ci, co)
  dtype = jnp.result_type(x, w)

  def chunk(xc):
    y = jnp.dot(_patches(xc, (kh, kw), strides, (ho, wo)), wm,
                preferred_element_type=jnp.float32)
    return y.astype(dtype).reshape(c, ho, wo, co)

  if c == n:
    return chunk(xp)
  return lax.map(chunk, xp.reshape(n // c, c, hp, wp, ci)).reshape(n, ho, wo, co)


def _patchable(padding, groups: int) -> bool:
  """Whether patch matmuls compute the convolution: not grouped, no negative padding."""
  return groups == 1 and min(min(p) for p in padding) >= 0


def _winograd(input_shape, kernel_shape, dtype, strides, padding, groups) -> bool:
  return use_winograd() and winograd.applies(input_shape, kernel_shape, strides, padding,
                                             groups, dtype)


def _pointwise(kernel_shape, strides, padding, groups: int) -> bool:
  """A 1x1 convolution with stride 1, no padding, ungrouped: a plain matmul over pixels
  (the patch path's chunks only add a loop there)."""
  return (tuple(kernel_shape[:2]) == (1, 1) and tuple(strides) == (1, 1) and groups == 1
          and all(p == 0 for pair in padding for p in pair))


def _pixel_matmul(x: jax.Array, m: jax.Array) -> jax.Array:
  """[N, H, W, C] x [C, D] -> [N, H, W, D], accumulated in float32, in x and m's type."""
  y = jnp.dot(x.reshape(-1, x.shape[-1]), m, preferred_element_type=jnp.float32)
  return y.astype(jnp.result_type(x, m)).reshape(*x.shape[:3], m.shape[-1])


def _forward(x, w, strides, padding, groups):
  if _pointwise(w.shape, strides, padding, groups):
    return _pixel_matmul(x, w.reshape(w.shape[2:]))
  if _winograd(x.shape, w.shape, jnp.result_type(x, w), strides, padding, groups):
    return winograd.conv(x, w, padding)
  if _patchable(padding, groups):
    return im2col_conv(x, w, strides, padding)
  return _native(x, w, strides, padding, groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def matmul_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]], groups: int = 1) -> jax.Array:
  """NHWC x HWIO -> NHWC convolution (explicit padding, ``groups`` as ``feature_group_count``)
  equal to ``lax.conv_general_dilated`` up to float32 summation order, computed by matmuls."""
  return _forward(x, w, strides, padding, groups)


def _fwd(x, w, strides, padding, groups):
  return _forward(x, w, strides, padding, groups), (x, w)


def weight_gradient(x: jax.Array, dy: jax.Array, kernel: Sequence[int], strides, padding,
                    groups: int) -> jax.Array:
  """d(sum(conv(x, W) * dy)) / dW, [kh, kw, C_in / groups, C_out], float32. ``groups`` = 1:
  patches^T x dy per chunk of images, summed over the chunks (``lax.scan``); grouped: one
  matmul per tap (a multiply-reduce for depthwise convolutions)."""
  kh, kw = kernel
  n, ho, wo, co = dy.shape
  ci = x.shape[-1]
  if _pointwise(kernel, strides, padding, groups):
    return lax.dot_general(x.reshape(-1, ci), dy.reshape(-1, co), (((0,), (0,)), ((), ())),
                           preferred_element_type=jnp.float32).reshape(1, 1, ci, co)
  if _winograd(x.shape, (kh, kw, ci, co), jnp.result_type(x, dy), strides, padding, groups):
    return winograd.weight_gradient(x, dy, padding)
  xp = _pad(x, padding)
  if groups == 1:
    c = _chunk(n, ho * wo, kh * kw * ci)

    def chunk(acc, xc_dyc):
      xc, dyc = xc_dyc
      return acc + lax.dot_general(_patches(xc, kernel, strides, (ho, wo)), dyc.reshape(-1, co),
                                   (((0,), (0,)), ((), ())),
                                   preferred_element_type=jnp.float32), None

    if c == n:
      return chunk(0.0, (xp, dy))[0].reshape(kh, kw, ci, co)
    dw, _ = lax.scan(chunk, jnp.zeros((kh * kw * ci, co), jnp.float32),
                     (xp.reshape(n // c, c, *xp.shape[1:]), dy.reshape(n // c, c, ho, wo, co)))
    return dw.reshape(kh, kw, ci, co)
  cig, cog = ci // groups, co // groups
  sh, sw = strides
  dy_rows = dy.reshape(-1, co)
  taps = []
  for i in range(kh):
    for j in range(kw):
      xs = lax.slice(xp, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, ci),
                     (1, sh, sw, 1)).reshape(-1, ci)
      if cig == 1 and cog == 1:  # Depthwise: a multiply-reduce per channel.
        taps.append(jnp.sum(xs.astype(jnp.float32) * dy_rows, axis=0)[None, :])
      else:
        g = jnp.einsum("pgi,pgo->igo", xs.reshape(-1, groups, cig),
                       dy_rows.reshape(-1, groups, cog), preferred_element_type=jnp.float32)
        taps.append(g.reshape(cig, co))
  return jnp.stack(taps).reshape(kh, kw, cig, co)


def strided_input_gradient(x_shape: Sequence[int], w: jax.Array, dy: jax.Array, strides,
                           padding) -> jax.Array:
  """d(sum(conv(x, W) * dy)) / dx of a strided convolution (``groups`` = 1): per chunk of
  images, the patches' gradient ``dy [c*H_out*W_out, C_out] x W^T [C_out, kh*kw*C_in]``, each
  tap's slice placed back at its input pixels (``lax.pad`` with interior padding: every
  stride-th pixel) and the taps summed (one fused loop; no scatter), then the padding cut."""
  n, h, wd, ci = x_shape
  kh, kw, _, co = w.shape
  _, ho, wo, _ = dy.shape
  (sh, sw), dtype = strides, jnp.result_type(dy, w)
  hp, wp = h + sum(padding[0]), wd + sum(padding[1])
  wt = w.reshape(kh * kw * ci, co).T
  c = _chunk(n, ho * wo, kh * kw * ci)

  def chunk(dyc):
    dp = jnp.dot(dyc.reshape(-1, co), wt, preferred_element_type=jnp.float32)
    dp = dp.astype(dtype).reshape(c, ho, wo, kh, kw, ci)
    dx = None
    for i in range(kh):
      for j in range(kw):
        placed = lax.pad(dp[:, :, :, i, j, :], jnp.zeros((), dtype),
                         ((0, 0, 0), (i, hp - i - sh * (ho - 1) - 1, sh - 1),
                          (j, wp - j - sw * (wo - 1) - 1, sw - 1), (0, 0, 0)))
        dx = placed if dx is None else dx + placed
    return dx[:, padding[0][0]:padding[0][0] + h, padding[1][0]:padding[1][0] + wd]

  if c == n:
    return chunk(dy)
  return lax.map(chunk, dy.reshape(n // c, c, ho, wo, co)).reshape(n, h, wd, ci)


def input_gradient(x: jax.Array, w: jax.Array, dy: jax.Array, strides, padding,
                   groups: int) -> jax.Array:
  """d(sum(conv(x, W) * dy)) / dx. ``groups`` = 1: stride 1, the convolution of dy with the
  flipped, transposed kernel (``im2col_conv``); strided, ``strided_input_gradient``.
  Grouped: XLA's own transpose."""
  kh, kw = w.shape[:2]
  if _pointwise(w.shape, strides, padding, groups):
    return _pixel_matmul(dy, w.reshape(w.shape[2:]).T)
  back = ((kh - 1 - padding[0][0], kh - 1 - padding[0][1]),
          (kw - 1 - padding[1][0], kw - 1 - padding[1][1]))
  if tuple(strides) == (1, 1) and _patchable(back, groups):
    flipped = jnp.flip(w, (0, 1)).swapaxes(2, 3)
    if _winograd(dy.shape, flipped.shape, jnp.result_type(dy, w), strides, back, groups):
      return winograd.conv(dy, flipped, back)
    return im2col_conv(dy, flipped, (1, 1), back)
  if tuple(strides) != (1, 1) and _patchable(padding, groups):
    return strided_input_gradient(x.shape, w, dy, strides, padding)
  _, vjp = jax.vjp(lambda x: _native(x, w, strides, padding, groups), x)
  return vjp(dy)[0]


def _bwd(strides, padding, groups, res, dy):
  x, w = res
  dx = input_gradient(x, w, dy, strides, padding, groups).astype(x.dtype)
  dw = weight_gradient(x, dy, w.shape[:2], strides, padding, groups)
  return dx, dw.astype(w.dtype)


matmul_conv.defvjp(_fwd, _bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated``'s signature (what ``flax.linen.Conv`` calls). 2-D NHWC
  convolutions with explicit padding and no dilation take ``matmul_conv`` on CPU, except in
  float64 (its matmuls accumulate in float32); everything else is
  ``lax.conv_general_dilated``."""
  simple = (lhs.ndim == 4 and not isinstance(padding, str)
            and all(d == 1 for d in (lhs_dilation or (1, 1)))
            and all(d == 1 for d in (rhs_dilation or (1, 1)))
            and batch_group_count == 1 and preferred_element_type is None
            and jnp.result_type(lhs, rhs) != jnp.float64
            and _is_nhwc(dimension_numbers, lhs.ndim))
  if simple and use_patch_matmuls():
    return matmul_conv(lhs, rhs, tuple(window_strides),
                            tuple(tuple(p) for p in padding), feature_group_count)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  batch_group_count, precision, preferred_element_type)


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
  if dimension_numbers is None:
    return False
  want = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, _NHWC)
  got = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
  return got == want
