"""The zoo's convolution: XLA's native one, with weight gradients computed as matmuls on CPU.

XLA:CPU computes a convolution's weight gradient as a convolution whose kernel is the whole
output map, at a few GFLOP/s, while its forward convolution and its matmuls run more than
ten times faster. On CPU, ``conv_general_dilated`` keeps the native forward convolution and
input gradient and computes the weight gradient tap by tap:
``dW[i, j] = sum_(n, h, w) x_pad[n, s*h + i, s*w + j, :]^T dy[n, h, w, :]``, one
``[C_in, N*H*W] x [N*H*W, C_out]`` matmul per kernel tap (a multiply-reduce for depthwise
convolutions). On GPU and TPU, whose convolution libraries are fast, it is
``lax.conv_general_dilated`` itself.

``KD_JAX_CONV=native`` (environment) turns the CPU path off, e.g. to compare.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def use_matmul_gradients() -> bool:
  """Whether convolutions traced now take the CPU path (the default backend is CPU and
  ``KD_JAX_CONV`` is not ``native``)."""
  return jax.default_backend() == "cpu" and os.environ.get("KD_JAX_CONV", "") != "native"


def _native(x, w, strides, padding, groups):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC,
                                  feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def matmul_grad_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                     padding: tuple[tuple[int, int], tuple[int, int]], groups: int = 1) -> jax.Array:
  """NHWC x HWIO -> NHWC convolution (explicit padding, ``groups`` as ``feature_group_count``)
  equal to ``lax.conv_general_dilated``; its weight gradient is computed by matmuls."""
  return _native(x, w, strides, padding, groups)


def _fwd(x, w, strides, padding, groups):
  return _native(x, w, strides, padding, groups), (x, w)


def weight_gradient(x: jax.Array, dy: jax.Array, kernel: Sequence[int], strides, padding,
                    groups: int) -> jax.Array:
  """d(sum(conv(x, W) * dy)) / dW, [kh, kw, C_in / groups, C_out], by one matmul per tap."""
  kh, kw = kernel
  n, ho, wo, co = dy.shape
  ci = x.shape[-1]
  cig, cog = ci // groups, co // groups
  sh, sw = strides
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  dy_rows = dy.reshape(-1, co)
  taps = []
  for i in range(kh):
    for j in range(kw):
      xs = lax.slice(xp, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, ci),
                     (1, sh, sw, 1)).reshape(-1, ci)
      if groups == 1:
        taps.append(jnp.dot(xs.T, dy_rows, preferred_element_type=jnp.float32))
      elif cig == 1 and cog == 1:  # Depthwise: a multiply-reduce per channel.
        taps.append(jnp.sum(xs.astype(jnp.float32) * dy_rows, axis=0)[None, :])
      else:
        g = jnp.einsum("pgi,pgo->igo", xs.reshape(-1, groups, cig),
                       dy_rows.reshape(-1, groups, cog), preferred_element_type=jnp.float32)
        taps.append(g.reshape(cig, co))
  return jnp.stack(taps).reshape(kh, kw, cig, co)


def _bwd(strides, padding, groups, res, dy):
  x, w = res
  _, input_vjp = jax.vjp(lambda x: _native(x, w, strides, padding, groups), x)
  (dx,) = input_vjp(dy)
  dw = weight_gradient(x, dy, w.shape[:2], strides, padding, groups)
  return dx, dw.astype(w.dtype)


matmul_grad_conv.defvjp(_fwd, _bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated``'s signature (what ``flax.linen.Conv`` calls). 2-D NHWC
  convolutions with explicit padding and no dilation take ``matmul_grad_conv`` on CPU;
  everything else is ``lax.conv_general_dilated``."""
  simple = (lhs.ndim == 4 and not isinstance(padding, str)
            and all(d == 1 for d in (lhs_dilation or (1, 1)))
            and all(d == 1 for d in (rhs_dilation or (1, 1)))
            and batch_group_count == 1 and preferred_element_type is None
            and _is_nhwc(dimension_numbers, lhs.ndim))
  if simple and use_matmul_gradients():
    return matmul_grad_conv(lhs, rhs, tuple(window_strides),
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
