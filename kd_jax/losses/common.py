"""Array helpers shared by the objectives, each equal to the PyTorch operation the
reference implementations use (NHWC instead of NCHW)."""
from __future__ import annotations

import functools
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp

Features = Union[jax.Array, Sequence[jax.Array]]


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """``torch.nn.functional.normalize(x, p=2, dim=axis, eps)``: ``x / max(||x||_2, eps)``.

  Written as ``sqrt(max(||x||^2, eps^2))`` (the same value) so that a zero row has a zero
  gradient, as in PyTorch, instead of NaN."""
  norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), eps * eps))
  return x / norm


def _pool_matrix(size: int, out: int) -> jax.Array:
  """[out, size] averaging weights of ``adaptive_avg_pool`` along one axis: output ``i``
  averages inputs ``floor(i*size/out) .. ceil((i+1)*size/out) - 1``."""
  rows = []
  for i in range(out):
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(size)])
  return jnp.asarray(rows, jnp.float32)


def adaptive_avg_pool(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """``F.adaptive_avg_pool2d`` on NHWC: [B, H, W, C] -> [B, oh, ow, C] (overlapping
  windows when the sizes do not divide, exactly as PyTorch)."""
  h, w = x.shape[1:3]
  oh, ow = out_hw
  if (h, w) == (oh, ow):
    return x
  if h % oh == 0 and w % ow == 0:
    b, c = x.shape[0], x.shape[3]
    return jnp.mean(x.reshape(b, oh, h // oh, ow, w // ow, c), axis=(2, 4))
  ph, pw = _pool_matrix(h, oh).astype(x.dtype), _pool_matrix(w, ow).astype(x.dtype)
  return jnp.einsum("ih,jw,bhwc->bijc", ph, pw, x)


def match_spatial(f_s: jax.Array, f_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """RepDistiller's size matching (AT, FT, VID, NST, FSP): the map with the larger height is
  adaptive-average-pooled to ``(h, h)``, ``h`` the smaller height (square, as the reference)."""
  s_h, t_h = f_s.shape[1], f_t.shape[1]
  if s_h > t_h:
    f_s = adaptive_avg_pool(f_s, (t_h, t_h))
  elif s_h < t_h:
    f_t = adaptive_avg_pool(f_t, (s_h, s_h))
  return f_s, f_t


def smooth_l1(x: jax.Array, y: jax.Array, beta: float = 1.0) -> jax.Array:
  """``F.smooth_l1_loss(x, y)`` (mean): ``0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - beta/2``."""
  d = jnp.abs(x - y)
  return jnp.mean(jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta))


def flatten(x: jax.Array) -> jax.Array:
  """[B, ...] -> [B, prod(...)]. (NHWC order, not NCHW: every loss that flattens uses only
  dot products or norms of whole rows, which are invariant to the order of elements.)"""
  return x.reshape(x.shape[0], -1)


def summed_over_layers(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """Lets a per-layer loss ``fn(f_s, f_t, **kw)`` also take equal-length sequences of
  maps, returning the sum over layers (how RepDistiller combines its per-layer losses)."""

  @functools.wraps(fn)
  def wrapper(f_s: Features, f_t: Features, *args, **kwargs) -> jax.Array:
    if isinstance(f_s, (list, tuple)):
      if not isinstance(f_t, (list, tuple)) or len(f_s) != len(f_t):
        raise ValueError(f"{fn.__name__}: student and teacher need the same number of "
                         f"feature maps")
      return sum(fn(s, t, *args, **kwargs) for s, t in zip(f_s, f_t))
    return fn(f_s, f_t, *args, **kwargs)

  return wrapper


def float32(*xs: jax.Array):
  """Promotes to at least float32 (losses do their arithmetic in float32 whatever the
  compute dtype; float64 stays float64, for gradient checks)."""
  out = tuple(jnp.asarray(x).astype(jnp.promote_types(jnp.asarray(x).dtype, jnp.float32))
              for x in xs)
  return out if len(out) > 1 else out[0]
