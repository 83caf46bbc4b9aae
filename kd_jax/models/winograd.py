"""Winograd's minimal filtering F(2x2, 3x3) for the CPU convolution (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016): 3x3 stride-1 convolutions with 16
multiplications per 2x2 output tile and input channel where a direct one has 36.

Each 4x4 input tile ``d`` (tiles overlap by 2) becomes ``V = B^T d B``, each kernel ``g``
becomes ``U = G g G^T``, and a tile's 2x2 outputs are ``A^T M A`` with ``M`` the sum over input
channels of ``U * V``: 16 matmuls ``V[p] [tiles, C_in] x U[p] [C_in, C_out]``, one batched
dot, 2.25x fewer multiply-adds than the patch matmul. ``B`` and ``A`` hold 0 and +-1, so a
transformed value is a signed sum of 4 input pixels (``V``) or 9 products (``A^T M A``):
both are gathers with constant indices that XLA fuses into one loop each (zero padding is
the gather's fill, so no padded copy of the input is made). The weight gradient is the same
algebra transposed: ``dU[p] = V[p]^T dM[p]`` with ``dM = A dY A^T`` (a signed sum of up to 4
output gradients), then ``dg = G^T dU G``. Tiles are taken a few images at a time
(``lax.map``/``lax.scan`` over chunks whose transformed tiles fit ``_TILE_BYTES``).

Rounding: a transformed value adds at most 9 terms and ``G`` halves, so results differ from
a direct convolution by a few float32 ulps of the largest term (``tests/models/test_conv.py``
holds every path to XLA's convolution at 1e-5); only float32 takes this path (bfloat16
would round the transforms).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
_B16 = np.kron(_BT, _BT)  # [16, 16]: vec(B^T d B) = _B16 vec(d) (row-major 4x4 tiles).
_A16 = np.kron(_AT, _AT)  # [4, 16]: vec(A^T M A) = _A16 vec(M) (row-major 2x2 outputs).

# Transformed tiles of one chunk of images, float32 bytes: on the 2-core EPYC (Zen 3) 8 MB
# chunks ran ResNet's 64-channel 3x3 at 32x32 1.7x faster than the patch matmul; 1 MB
# chunks were slower than it, 16 MB ones 1.3x slower than 8 MB.
_TILE_BYTES = 8 * 2**20

# Output [terms-row, c, tile rows, tile columns, C]: one value per tile, images and channels whole.
_GATHER = lax.GatherDimensionNumbers(offset_dims=(1, 4), collapsed_slice_dims=(1, 2),
                                     start_index_map=(1, 2))


# Below this many multiply-adds per convolution (n * H_out * W_out * 9 * C_in * C_out) the
# transforms cost more than they save (2-core EPYC, Zen 3, forward and both gradients, batch
# 64: 16-32 channels at 16x16-32x32 ran 1.5-3.7x slower than the patch matmul, 64 channels at
# 32x32 1.6x faster); between it and 4x it, also below 16x16 outputs (128 channels at 8x8
# was 1.2x slower).
_MIN_MACS = 2**29


def applies(input_shape, kernel_shape, strides, padding, groups: int, dtype) -> bool:
  """Whether a convolution takes this path: 3x3, stride 1, ungrouped, padding 0-2 per side,
  float32, and large enough to gain (``_MIN_MACS``)."""
  kh, kw, ci, co = kernel_shape
  if not ((kh, kw) == (3, 3) and tuple(strides) == (1, 1) and groups == 1
          and all(0 <= p <= 2 for pair in padding for p in pair)
          and jnp.dtype(dtype) == jnp.float32):
    return False
  n, h, w, _ = input_shape
  ho, wo, _, _ = _geometry(h, w, padding)
  macs = n * ho * wo * 9 * ci * co
  return macs >= _MIN_MACS and (ho * wo >= 256 or macs >= 4 * _MIN_MACS)


def _terms(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each row's nonzero columns and their values, ``[rows, k]`` each (shorter rows padded
  with column 0 and value 0)."""
  k = int(max((row != 0).sum() for row in matrix))
  cols = np.zeros((len(matrix), k), np.int64)
  vals = np.zeros((len(matrix), k), np.float32)
  for r, row in enumerate(matrix):
    nz = np.flatnonzero(row)
    cols[r, :len(nz)], vals[r, :len(nz)] = nz, row[nz]
  return cols, vals


@functools.lru_cache(maxsize=None)
def _indices(matrix_name: str, th: int, tw: int, top: int, left: int):
  """``([k, rows, th, tw, 2] pixel indices, [k, rows] signs)``: term ``k`` of row ``r`` of
  the transform reads, for tile ``(i, j)``, pixel ``(2i + a - top, 2j + b - left)`` where
  ``(a, b)`` is the term's position in the 4x4 tile (``B``) or 2x2 output block (``A^T``)."""
  matrix, width = {"B": (_B16, 4), "AT": (_A16.T, 2)}[matrix_name]
  cols, vals = _terms(matrix)
  a, b = np.divmod(cols, width)  # [rows, k] each.
  ti = 2 * np.arange(th)[:, None] - top
  tj = 2 * np.arange(tw)[None, :] - left
  rows = a.T[:, :, None, None] + ti  # [k, rows, th, 1]
  cols_ = b.T[:, :, None, None] + tj  # [k, rows, 1, tw]
  idx = np.stack(np.broadcast_arrays(rows, cols_), -1).astype(np.int32)
  idx.setflags(write=False)
  return idx, vals.T.copy()


def _signed_sum(x: jax.Array, matrix_name: str, th: int, tw: int, top: int, left: int):
  """``[rows, c, th, tw, C]``: each row's signed sum of ``x``'s pixels (outside ``x``: 0)."""
  c, _, _, ch = x.shape
  idx, signs = _indices(matrix_name, th, tw, top, left)
  out = None
  for k in range(len(idx)):
    g = lax.gather(x, idx[k], _GATHER, (c, 1, 1, ch), indices_are_sorted=False,
                   unique_indices=False, mode=lax.GatherScatterMode.FILL_OR_DROP,
                   fill_value=0)
    term = g * jnp.asarray(signs[k], x.dtype).reshape(-1, 1, 1, 1, 1)
    out = term if out is None else out + term
  return out


def _output_tiles(m: jax.Array, c: int, th: int, tw: int, co: int) -> jax.Array:
  """``M`` [16, c*th*tw, C_out] -> ``A^T M A`` laid out as images [c, 2*th, 2*tw, C_out]."""
  cols, vals = _terms(_A16)
  m = m.reshape(16, c, th, tw, co)
  y = None
  for k in range(cols.shape[1]):
    term = jnp.take(m, jnp.asarray(cols[:, k]), axis=0) * jnp.asarray(vals[:, k]).reshape(
        4, 1, 1, 1, 1)
    y = term if y is None else y + term
  y = y.reshape(2, 2, c, th, tw, co).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(c, 2 * th, 2 * tw, co)


def _geometry(height: int, width: int, padding):
  """Output size and tiles per axis (the last tile may reach past the output)."""
  ho, wo = height + sum(padding[0]) - 2, width + sum(padding[1]) - 2
  return ho, wo, -(-ho // 2), -(-wo // 2)


def _chunk(n: int, tile_bytes: int) -> int:
  """The largest divisor of ``n`` whose transformed tiles fit ``_TILE_BYTES``; at least 1."""
  c = max(1, min(n, _TILE_BYTES // max(1, tile_bytes)))
  while n % c:
    c -= 1
  return c


def conv(x: jax.Array, w: jax.Array, padding) -> jax.Array:
  """NHWC x HWIO (3x3) -> NHWC convolution, stride 1, explicit ``padding``; float32."""
  n, h, wd, ci = x.shape
  co = w.shape[-1]
  ho, wo, th, tw = _geometry(h, wd, padding)
  u = jnp.einsum("ai,ijkl,bj->abkl", _G, w, _G).reshape(16, ci, co)
  c = _chunk(n, 16 * th * tw * max(ci, co) * 4)

  def chunk(xc):
    v = _signed_sum(xc, "B", th, tw, padding[0][0], padding[1][0]).reshape(16, -1, ci)
    m = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))  # [16, tiles, C_out]
    return _output_tiles(m, c, th, tw, co)[:, :ho, :wo]

  if c == n:
    return chunk(x)
  return lax.map(chunk, x.reshape(n // c, c, h, wd, ci)).reshape(n, ho, wo, co)


def weight_gradient(x: jax.Array, dy: jax.Array, padding) -> jax.Array:
  """d(sum(conv(x, W) * dy)) / dW, [3, 3, C_in, C_out], float32: ``G^T (sum over chunks of
  V^T dM) G``."""
  n, h, wd, ci = x.shape
  co = dy.shape[-1]
  _, _, th, tw = _geometry(h, wd, padding)
  c = _chunk(n, 16 * th * tw * max(ci, co) * 4)

  def chunk(acc, xs):
    xc, dyc = xs
    v = _signed_sum(xc, "B", th, tw, padding[0][0], padding[1][0]).reshape(16, -1, ci)
    dm = _signed_sum(dyc, "AT", th, tw, 0, 0).reshape(16, -1, co)
    return acc + lax.dot_general(v, dm, (((1,), (1,)), ((0,), (0,)))), None

  if c == n:
    du = chunk(0.0, (x, dy))[0]
  else:
    du, _ = lax.scan(chunk, jnp.zeros((16, ci, co), jnp.float32),
                     (x.reshape(n // c, c, *x.shape[1:]), dy.reshape(n // c, c, *dy.shape[1:])))
  return jnp.einsum("ai,abkl,bj->ijkl", _G, du.reshape(4, 4, ci, co), _G)
