"""RandAugment as FixMatch-style code draws it (MLKD's strong view: Jin-Ying/Multi-Level-Logit-
Distillation ``mdistiller/dataset/cifar100.py``: ``RandAugment(2, 10)``), on uint8 images on
the device, inside the jitted step.

Per image: ``n`` operations drawn uniformly with replacement from 14 (AutoContrast,
Brightness, Color, Contrast, Equalize, Identity, Posterize, Rotate, Sharpness, ShearX,
ShearY, Solarize, TranslateX, TranslateY), each at a magnitude uniform in its range, then a
Cutout of side ``u * 0.5 * W`` (``u`` uniform) filled with (125, 123, 114). Each operation
is Pillow's arithmetic (``ImageOps``, ``ImageEnhance``, ``Image.rotate`` / ``transform``
with nearest resampling and black fill) on the uint8 values; ``tests/data/
test_randaugment.py`` compares each with Pillow. Images are [B, H, W, C] uint8 with C = 3
(RGB) or 1 (grey: Color is the identity and Cutout fills with 125).
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# (name, low, high) of each operation's magnitude, in the reference's order.
OPS = (("auto_contrast", 0.0, 1.0), ("brightness", 0.05, 0.95), ("color", 0.05, 0.95),
       ("contrast", 0.05, 0.95), ("equalize", 0.0, 1.0), ("identity", 0.0, 1.0),
       ("posterize", 4.0, 8.0), ("rotate", -30.0, 30.0), ("sharpness", 0.05, 0.95),
       ("shear_x", -0.3, 0.3), ("shear_y", -0.3, 0.3), ("solarize", 0.0, 256.0),
       ("translate_x", -0.3, 0.3), ("translate_y", -0.3, 0.3))
CUTOUT_FILL = (125, 123, 114)


def _u8(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0, 255).astype(jnp.uint8)


def _lut(image: jax.Array, lut: jax.Array) -> jax.Array:
  """``image.point(lut)``: [H, W, C] uint8, lut [256, C] int -> uint8 (clipped to 0..255)."""
  channels = jnp.arange(image.shape[-1])
  return _u8(lut[image.astype(jnp.int32), channels])


def _histogram(image: jax.Array) -> jax.Array:
  """[256, C] int32 counts of each value per channel."""
  flat = image.reshape(-1, image.shape[-1]).astype(jnp.int32)
  return jax.vmap(lambda c: jnp.zeros(256, jnp.int32).at[c].add(1), 1, 1)(flat)


def _grey(image: jax.Array) -> jax.Array:
  """Pillow's ``convert("L")``: (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16, [H, W, 1]
  int32 (a grey image: itself)."""
  x = image.astype(jnp.int32)
  if image.shape[-1] == 1:
    return x
  return (x[..., 0:1] * 19595 + x[..., 1:2] * 38470 + x[..., 2:3] * 7471 + 0x8000) >> 16


def _blend(degenerate: jax.Array, image: jax.Array, alpha: jax.Array) -> jax.Array:
  """``Image.blend(degenerate, image, alpha)``, alpha in [0, 1]: the float32
  ``d + alpha * (i - d)`` truncated (Pillow's ``Blend.c``)."""
  d = degenerate.astype(jnp.float32)
  out = d + jnp.float32(alpha) * (image.astype(jnp.float32) - d)
  return _u8(jnp.floor(out))


@functools.lru_cache(maxsize=None)
def _autocontrast_low_entries() -> np.ndarray:
  """Sorted keys ``lo << 16 | hi << 8 | ix`` where Pillow's float64 ``int(ix * scale +
  offset)`` lands 1 below the exact ``floor((ix - lo) * 255 / (hi - lo))`` (where that
  quotient is an integer, e.g. lo 0, hi 25: 25 -> 254): 12,094 of them."""
  keys = []
  ix = np.arange(256)
  for lo in range(255):
    hi = np.arange(lo + 1, 256)[:, None]
    scale = 255.0 / (hi - lo)
    pil = (ix * scale + (-lo * scale)).astype(np.int64)  # int() of values > -1: truncation.
    exact = (ix - lo) * 255 // (hi - lo)
    h, i = np.nonzero((pil < exact) & (ix >= lo) & (ix <= hi))
    keys.append((lo << 16) | (hi[h, 0] << 8) | i)
  return np.sort(np.concatenate(keys)).astype(np.int32)


def auto_contrast(image, _):
  """``ImageOps.autocontrast`` (cutoff 0): each channel stretched from [lo, hi] to [0, 255],
  ``int(ix * scale + offset)`` with ``scale = 255 / (hi - lo)`` in float64 (exactly: the
  integer quotient, 1 less where Pillow's rounding puts it there); unchanged where
  hi <= lo."""
  x = image.astype(jnp.int32)
  lo, hi = jnp.min(x, axis=(0, 1)), jnp.max(x, axis=(0, 1))
  ix = jnp.arange(256, dtype=jnp.int32)[:, None]
  stretched = jnp.floor_divide((ix - lo) * 255, jnp.maximum(hi - lo, 1))
  table = jnp.asarray(_autocontrast_low_entries())
  keys = (lo << 16) | (hi << 8) | ix
  pos = jnp.clip(jnp.searchsorted(table, keys), 0, table.shape[0] - 1)
  stretched = stretched - (table[pos] == keys).astype(jnp.int32)
  lut = jnp.where(hi > lo, jnp.clip(stretched, 0, 255), ix)
  return _lut(image, lut)


def brightness(image, v):
  return _blend(jnp.zeros_like(image), image, v)


def color(image, v):
  return _blend(jnp.broadcast_to(_grey(image), image.shape), image, v)


def contrast(image, v):
  """``ImageEnhance.Contrast``: blended with the grey image's mean, ``int(mean + 0.5)``."""
  mean = jnp.floor(jnp.mean(_grey(image).astype(jnp.float32)) + 0.5)
  return _blend(jnp.full(image.shape, mean, jnp.float32), image, v)


def equalize(image, _):
  """``ImageOps.equalize``: per channel, ``step = (n - count of the last used value) // 255``,
  ``lut[i] = (step // 2 + count below i) // step``; unchanged where step is 0."""
  h = _histogram(image)
  used = h > 0
  last = 255 - jnp.argmax(used[::-1], axis=0)
  total = jnp.sum(h, axis=0)
  step = (total - jnp.take_along_axis(h, last[None], axis=0)[0]) // 255
  below = jnp.cumsum(h, axis=0) - h
  lut = (step // 2 + below) // jnp.maximum(step, 1)
  ix = jnp.arange(256, dtype=jnp.int32)[:, None]
  return _lut(image, jnp.where((step > 0) & (jnp.sum(used, axis=0) > 1), lut, ix))


def identity(image, _):
  return image


def posterize(image, v):
  bits = jnp.maximum(1, v.astype(jnp.int32))
  mask = (0xFF ^ ((1 << (8 - bits)) - 1)).astype(jnp.uint8)
  return image & mask


def _affine(image: jax.Array, a, b, c, d, e, f) -> jax.Array:
  """``image.transform(size, AFFINE, (a, b, c, d, e, f), NEAREST)``: output pixel (x, y)
  reads input ``(int(a (x + .5) + b (y + .5) + c), int(d (x + .5) + e (y + .5) + f))``,
  black outside (Pillow's ``affine_transform``: negative coordinates are outside)."""
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) + 0.5,
                        jnp.arange(w, dtype=jnp.float32) + 0.5, indexing="ij")
  xin, yin = a * xs + b * ys + c, d * xs + e * ys + f
  inside = (xin >= 0) & (yin >= 0) & (xin < w) & (yin < h)
  xi = jnp.clip(xin.astype(jnp.int32), 0, w - 1)
  yi = jnp.clip(yin.astype(jnp.int32), 0, h - 1)
  return jnp.where(inside[..., None], image[yi, xi], jnp.zeros((), image.dtype))


def rotate(image, v):
  """``image.rotate(v)`` (degrees counter-clockwise about the centre, nearest, black)."""
  h, w = image.shape[:2]
  angle = -jnp.deg2rad(jnp.mod(v.astype(jnp.float32), 360.0))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  cx, cy = w / 2.0, h / 2.0
  return _affine(image, cos, sin, cos * -cx + sin * -cy + cx,
                 -sin, cos, -sin * -cx + cos * -cy + cy)


def sharpness(image, v):
  """``ImageEnhance.Sharpness``: blended with Pillow's SMOOTH filter (3 x 3 kernel
  [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, the border pixels unchanged)."""
  x = image.astype(jnp.float32)
  k = jnp.asarray([[1, 1, 1], [1, 5, 1], [1, 1, 1]], jnp.float32) / 13.0
  h, w = image.shape[:2]
  inner = sum(k[i, j] * x[i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
  smooth = x.at[1:-1, 1:-1].set(jnp.floor(jnp.clip(inner, 0, 255) + 0.5))
  return _blend(smooth, image, v)


def shear_x(image, v):
  return _affine(image, 1.0, v, 0.0, 0.0, 1.0, 0.0)


def shear_y(image, v):
  return _affine(image, 1.0, 0.0, 0.0, v, 1.0, 0.0)


def solarize(image, v):
  return jnp.where(image.astype(jnp.float32) < v, image, 255 - image)


def translate_x(image, v):
  return _affine(image, 1.0, 0.0, v * image.shape[1], 0.0, 1.0, 0.0)


def translate_y(image, v):
  return _affine(image, 1.0, 0.0, 0.0, 0.0, 1.0, v * image.shape[0])


FUNCTIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    name: globals()[name] for name, _, _ in OPS}


def cutout(image: jax.Array, size: jax.Array, x0: jax.Array, y0: jax.Array) -> jax.Array:
  """FixMatch's ``CutoutAbs``: the square from ``(int(max(0, x0 - size / 2)), int(max(0, y0 -
  size / 2)))`` to ``x0' + size`` (capped at the image), both corners included as
  ``ImageDraw.rectangle`` draws them, filled with ``CUTOUT_FILL``; ``size`` 0: unchanged."""
  h, w, c = image.shape
  left = jnp.floor(jnp.maximum(0.0, x0 - size / 2.0))
  top = jnp.floor(jnp.maximum(0.0, y0 - size / 2.0))
  right = jnp.floor(jnp.minimum(w, left + size))
  bottom = jnp.floor(jnp.minimum(h, top + size))
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = (xs >= left) & (xs <= right) & (ys >= top) & (ys <= bottom) & (size > 0)
  fill = jnp.asarray(CUTOUT_FILL[:c] if c == 3 else CUTOUT_FILL[:1] * c, jnp.uint8)
  return jnp.where(box[..., None], fill, image)


def apply_op(image: jax.Array, index: jax.Array, magnitude: jax.Array) -> jax.Array:
  """Operation ``index`` of ``OPS`` at ``magnitude`` (already in its range) on one image."""
  branches = [lambda x, v, f=FUNCTIONS[name]: f(x, v) for name, _, _ in OPS]
  return jax.lax.switch(index, branches, image, magnitude)


def draw(rng: jax.Array, batch: int, n: int, size: int) -> dict[str, jax.Array]:
  """The random choices of ``rand_augment`` for ``batch`` images of width ``size``: ``index``
  [B, n] (uniform over ``OPS``), ``magnitude`` [B, n] (``low + (high - low) * u``), Cutout's
  ``size``, ``x0`` and ``y0`` [B] (``u * 0.5 * W``, ``u * W``, ``u * H``; square images)."""
  k_ops, k_mag, k_cut = jax.random.split(rng, 3)
  index = jax.random.randint(k_ops, (batch, n), 0, len(OPS))
  low = jnp.asarray([lo for _, lo, _ in OPS], jnp.float32)[index]
  high = jnp.asarray([hi for _, _, hi in OPS], jnp.float32)[index]
  u = jax.random.uniform(k_cut, (3, batch))
  return {"index": index, "magnitude": low + (high - low) * jax.random.uniform(k_mag, (batch, n)),
          "size": u[0] * 0.5 * size, "x0": u[1] * size, "y0": u[2] * size}


def rand_augment(images: jax.Array, rng: jax.Array, n: int = 2) -> jax.Array:
  """[B, H, W, C] uint8 -> the same: per image ``n`` operations (uniform, with replacement),
  each at a magnitude uniform in its range, then Cutout (``draw``)."""
  d = draw(rng, images.shape[0], n, images.shape[2])
  for i in range(n):
    images = jax.vmap(apply_op)(images, d["index"][:, i], d["magnitude"][:, i])
  return jax.vmap(cutout)(images, d["size"], d["x0"], d["y0"])


__all__ = ["CUTOUT_FILL", "FUNCTIONS", "OPS", "apply_op", "cutout", "draw", "rand_augment"] + list(
    FUNCTIONS)
