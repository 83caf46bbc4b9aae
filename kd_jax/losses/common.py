"""Array helpers shared by the losses, each equal to the PyTorch operation the reference
implementations use (NHWC instead of NCHW), and the input checks every public loss makes."""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Array:
  """An argument that is one array: ``shape`` as the docstring says it (e.g. "[B, H, W, C]"),
  ``ranks`` the ranks it may have (None: any rank >= ``min_rank``)."""
  shape: str
  ranks: tuple[int, ...] | None = None
  min_rank: int = 1

  def check(self, fn: str, name: str, value: Any) -> None:
    if isinstance(value, (list, tuple)):
      raise TypeError(f"{fn}: {name} must be one array {self.shape}, got a {type(value).__name__} "
                      f"of {len(value)} (sum a per-layer loss over layers yourself)")
    ndim = getattr(value, "ndim", None)
    if ndim is None:
      raise TypeError(f"{fn}: {name} must be an array {self.shape}, got {type(value).__name__}")
    if (self.ranks is not None and ndim not in self.ranks) or ndim < self.min_rank:
      raise ValueError(f"{fn}: {name} must be an array {self.shape}, got shape "
                       f"{tuple(value.shape)}")


@dataclasses.dataclass(frozen=True)
class Arrays:
  """An argument that is a list or tuple of arrays, each as ``item`` says."""
  item: Array

  def check(self, fn: str, name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)) or not value:
      raise TypeError(f"{fn}: {name} must be a non-empty list of arrays {self.item.shape}, got "
                      f"{type(value).__name__}")
    for i, v in enumerate(value):
      self.item.check(fn, f"{name}[{i}]", v)


MAP = Array("[B, H, W, C]", (4,))
MAPS = Arrays(MAP)
LOGITS = Array("[B, C]", (2,))
LABELS = Array("int [B]", (1,))
VECTORS = Array("[B, D]", (2,))
BATCH = Array("[B, ...] (rank >= 2)", min_rank=2)  # Flattened per example.


def expects(*, same_length: tuple[str, str] | None = None, **specs: Array | Arrays):
  """Declares what a loss takes and checks it on every call (at trace time under ``jit``):
  a list where one array is expected, an array of the wrong rank, or (``same_length``) two
  lists of unequal length raise one line naming the argument and the expected shape."""
  def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def checked(*args, **kwargs):
      given = signature.bind(*args, **kwargs).arguments
      for name, spec in specs.items():
        if given.get(name) is not None:
          spec.check(fn.__name__, name, given[name])
      if same_length is not None:
        a, b = (given[n] for n in same_length)
        if len(a) != len(b):
          raise ValueError(f"{fn.__name__}: {same_length[0]} has {len(a)} maps and "
                           f"{same_length[1]} {len(b)}; they must have the same number")
      return fn(*args, **kwargs)

    checked.expects = dict(specs)
    return checked

  return wrap


def absolute(x: jax.Array) -> jax.Array:
  """``|x|`` with PyTorch's gradient at 0 (``sign(0) = 0``; ``jnp.abs``'s is 1): where a
  student's and a teacher's value tie, the reference's gradient."""
  return jnp.sign(x) * x


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """``torch.nn.functional.normalize(x, p=2, dim=axis, eps)``: ``x / max(||x||_2, eps)``.

  Written as ``sqrt(max(||x||^2, eps^2))`` (the same value) so that a zero row has a zero
  gradient, as in PyTorch, instead of NaN."""
  norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), eps * eps))
  return x / norm


def _pool_matrix(size: int, out: int) -> np.ndarray:
  """[out, size] averaging weights of ``adaptive_avg_pool`` along one axis: output ``i``
  averages inputs ``floor(i*size/out) .. ceil((i+1)*size/out) - 1``."""
  rows = []
  for i in range(out):
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(size)])
  return np.asarray(rows, np.float64)  # Cast to the input's dtype: 1/3 exact to its precision.


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
  ph, pw = jnp.asarray(_pool_matrix(h, oh), x.dtype), jnp.asarray(_pool_matrix(w, ow), x.dtype)
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


def float32(*xs: jax.Array):
  """Promotes to at least float32 (losses do their arithmetic in float32 whatever the
  compute dtype; float64 stays float64, for gradient checks)."""
  out = tuple(jnp.asarray(x).astype(jnp.promote_types(jnp.asarray(x).dtype, jnp.float32))
              for x in xs)
  return out if len(out) > 1 else out[0]
