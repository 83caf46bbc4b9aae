"""Losses on intermediate feature maps (NHWC) and the modules some of them learn.

The RepDistiller family (Tian et al., "Contrastive Representation Distillation", ICLR
2020, ``distiller_zoo/``): FitNet, AT, FT, AB, VID, NST, FSP. Each function equals the
reference's arithmetic on the NCHW tensor; the docstrings give shapes and reductions.
Where maps differ in size the larger is adaptive-average-pooled (``common.match_spatial``)
inside the loss, as in the reference. Auxiliary modules initialise as PyTorch does.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses.common import (Features, adaptive_avg_pool, flatten, float32,
                                  l2_normalize, match_spatial, summed_over_layers)
from kd_jax.models import conv as conv_lib
from kd_jax.models import layers

# torch.nn.Conv2d's default initialisation (kaiming_uniform_(a=sqrt(5)) for the weight).
_torch_conv_init = layers.torch_default_conv_init


def _uniform(bound: float):
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class TorchConv(nn.Module):
  """``torch.nn.Conv2d(bias=True)`` with its default initialisation (weight and bias
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = k*k*C_in). NHWC."""

  features: int
  kernel: tuple[int, int] = (3, 3)
  stride: int = 1
  padding: int = 0
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    fan_in = self.kernel[0] * self.kernel[1] * x.shape[-1]
    pad = ((self.padding, self.padding), (self.padding, self.padding))
    return nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride), padding=pad,
                   use_bias=self.use_bias, kernel_init=_torch_conv_init,
                   bias_init=_uniform(fan_in ** -0.5),
                   conv_general_dilated=conv_lib.conv_general_dilated)(x)


class TorchConvTranspose(nn.Module):
  """``torch.nn.ConvTranspose2d(C_in, features, kernel, stride, padding)`` on NHWC.

  The kernel is stored as [k, k, C_in, features] = PyTorch's [C_in, C_out, k, k] weight
  permuted (2, 3, 0, 1); the op is the fractionally strided convolution with that kernel
  flipped. PyTorch's default initialisation: U(+-1/sqrt(features*k*k)) (PyTorch takes
  fan_in from the weight's second dimension)."""

  features: int
  kernel: int = 4
  stride: int = 2
  padding: int = 1

  @nn.compact
  def __call__(self, x):
    k = self.kernel
    bound = (self.features * k * k) ** -0.5
    w = self.param("kernel", _uniform(bound), (k, k, x.shape[-1], self.features))
    b = self.param("bias", _uniform(bound), (self.features,))
    pad = k - 1 - self.padding
    y = jax.lax.conv_general_dilated(
        x, jnp.flip(w, (0, 1)).astype(x.dtype), window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)), lhs_dilation=(self.stride, self.stride),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + b.astype(x.dtype)


class ConvReg(nn.Module):
  """RepDistiller's ``ConvReg`` (FitNet regressor; AB connector with ``use_relu=False``).

  [B, sH, sW, Cs] -> [B, tH, tW, out_channels], chosen by the heights: ``sH == 2 tH``:
  conv3x3 stride 2 pad 1; ``2 sH == tH``: ConvTranspose 4x4 stride 2 pad 1; ``sH >= tH``:
  conv with kernel ``(1 + sH - tH, 1 + sW - tW)``; then BN, then ReLU (if ``use_relu``).
  """

  out_channels: int
  out_size: tuple[int, int]
  use_relu: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True):
    s_h, s_w = x.shape[1:3]
    t_h, t_w = self.out_size
    if s_h == 2 * t_h:
      x = TorchConv(self.out_channels, (3, 3), stride=2, padding=1)(x)
    elif 2 * s_h == t_h:
      x = TorchConvTranspose(self.out_channels, 4, 2, 1)(x)
    elif s_h >= t_h:
      x = TorchConv(self.out_channels, (1 + s_h - t_h, 1 + s_w - t_w))(x)
    else:
      raise ValueError(f"ConvReg cannot map a student map of size {s_h}x{s_w} to a "
                       f"teacher map of size {t_h}x{t_w}")
    x = layers.batch_norm(train)(x)
    return nn.relu(x) if self.use_relu else x


def fitnet(f_s: jax.Array, f_t: jax.Array) -> jax.Array:
  """FitNet hint loss (Romero et al., ICLR 2015; RepDistiller ``HintLoss``).

  f_s: the student map after its ``ConvReg`` regressor, f_t: the teacher map, both
  [B, H, W, C]. Mean over all elements of ``(f_s - f_t)^2``.
  """
  f_s, f_t = float32(f_s, f_t)
  return jnp.mean(jnp.square(f_s - jax.lax.stop_gradient(f_t)))


def attention_map(f: jax.Array, p: float = 2.0) -> jax.Array:
  """AT's map: [B, H, W, C] -> [B, H*W], ``l2_normalize(mean_c f^p)`` per example."""
  return l2_normalize(flatten(jnp.mean(f ** p, axis=-1)), axis=1)


@summed_over_layers
def attention_transfer(f_s: Features, f_t: Features, p: float = 2.0) -> jax.Array:
  """Attention transfer (Zagoruyko & Komodakis, ICLR 2017; RepDistiller ``Attention``).

  f_s [B, Hs, Ws, Cs], f_t [B, Ht, Wt, Ct] (channels may differ); sizes matched by pooling.
  Per layer: mean over B*H*W of ``(attention_map(f_s) - attention_map(f_t))^2``.
  Sequences of maps give the sum over layers (the reference uses stage1..3, weight 1000).
  """
  f_s, f_t = match_spatial(*float32(f_s, f_t))
  diff = attention_map(f_s, p) - attention_map(jax.lax.stop_gradient(f_t), p)
  return jnp.mean(jnp.square(diff))


def factor_transfer(factor_s: jax.Array, factor_t: jax.Array, p1: float = 2.0,
                    p2: float = 1.0) -> jax.Array:
  """Factor transfer (Kim et al., NeurIPS 2018; RepDistiller ``FactorTransfer``).

  factor_s = ``Translator(f_s)``, factor_t = ``Paraphraser(f_t, is_factor=True)``, both
  [B, H, W, C'] (pooled to one size if they differ). With ``F(x) = l2_normalize(mean_c
  x^p1)`` per example: mean over B*H*W of ``|F(s) - F(t)|`` (``p2 == 1``) or
  ``(F(s) - F(t))^p2``.
  """
  factor_s, factor_t = match_spatial(*float32(factor_s, factor_t))
  diff = attention_map(factor_s, p1) - attention_map(jax.lax.stop_gradient(factor_t), p1)
  return jnp.mean(jnp.abs(diff)) if p2 == 1 else jnp.mean(diff ** p2)


class Paraphraser(nn.Module):
  """FT's teacher-side autoencoder (RepDistiller ``models/util.Paraphraser``).

  Encoder: conv3x3(C -> C), conv3x3(C -> k*C), conv3x3(k*C -> k*C); decoder: three
  ConvTranspose3x3 back to C; every layer has a bias and is followed by (BN if ``use_bn``)
  and LeakyReLU(0.1). ``__call__(f_t)`` -> ``(factor, reconstruction)``; with
  ``is_factor=True`` only the factor [B, H, W, int(k*C)].
  Trained first on its own (``paraphraser_reconstruction``), then frozen.
  """

  rate: float = 0.5
  use_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, is_factor: bool = False):
    c = x.shape[-1]
    out = int(c * self.rate)

    def act(y, name):
      if self.use_bn:
        y = layers.batch_norm(train, name=f"{name}_bn")(y)
      return nn.leaky_relu(y, 0.1)

    for i, ch in enumerate((c, out, out)):
      x = act(TorchConv(ch, (3, 3), padding=1, name=f"encoder{i}")(x), f"encoder{i}")
    factor = x
    if is_factor:
      return factor
    for i, ch in enumerate((out, c, c)):
      x = act(TorchConvTranspose(ch, 3, 1, 1, name=f"decoder{i}")(x), f"decoder{i}")
    return factor, x


class Translator(nn.Module):
  """FT's student-side encoder (RepDistiller ``models/util.Translator``): three conv3x3
  (Cs -> Cs -> out -> out, with bias) each followed by BN and LeakyReLU(0.1), where
  ``out = int(rate * C_teacher)`` matches the paraphraser's factor."""

  out_channels: int
  use_bn: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True):
    for i, ch in enumerate((x.shape[-1], self.out_channels, self.out_channels)):
      x = TorchConv(ch, (3, 3), padding=1, name=f"encoder{i}")(x)
      if self.use_bn:
        x = layers.batch_norm(train, name=f"encoder{i}_bn")(x)
      x = nn.leaky_relu(x, 0.1)
    return x


def paraphraser_reconstruction(reconstruction: jax.Array, f_t: jax.Array) -> jax.Array:
  """FT's initialisation stage: mean over all elements of ``(reconstruction - f_t)^2``."""
  reconstruction, f_t = float32(reconstruction, f_t)
  return jnp.mean(jnp.square(reconstruction - jax.lax.stop_gradient(f_t)))


def _ab_layer(s: jax.Array, t: jax.Array, margin: float) -> jax.Array:
  s_pos = (s > -margin) & (t <= 0)
  s_neg = (s <= margin) & (t > 0)
  loss = jnp.square(s + margin) * s_pos + jnp.square(s - margin) * s_neg
  return jnp.sum(jnp.abs(loss))


def activation_boundaries(f_s: Features, f_t: Features, margin: float = 1.0) -> jax.Array:
  """Activation-boundary transfer (Heo et al., AAAI 2019; RepDistiller ``ABLoss``).

  f_s: the student's pre-ReLU maps after the AB connector, f_t: the teacher's pre-ReLU
  maps, each [B, H, W, C] of equal shape; a sequence of n layers is weighted
  ``2^(i - n + 1)`` (i = 0..n-1). Per layer: ``sum |(s+m)^2 [s > -m, t <= 0] + (s-m)^2
  [s <= m, t > 0]| / B * 3 / 1000``; summed over layers. (The reference uses it only in an
  initialisation stage of the connector and the student's feature layers.)
  """
  if not isinstance(f_s, (list, tuple)):
    f_s, f_t = [f_s], [f_t]
  n = len(f_s)
  total = 0.0
  for i, (s, t) in enumerate(zip(f_s, f_t)):
    s, t = float32(s, t)
    total = total + 2.0 ** (i - n + 1) * _ab_layer(s, jax.lax.stop_gradient(t), margin) / s.shape[0]
  return total / 1000.0 * 3.0


class ABConnector(nn.Module):
  """AB's connector for one layer (RepDistiller ``Connector``): identity when the student
  map already has the teacher's channels and height, else ``ConvReg(use_relu=False)``."""

  out_channels: int
  out_size: tuple[int, int]

  @nn.compact
  def __call__(self, x, train: bool = True):
    if x.shape[-1] == self.out_channels and x.shape[1] == self.out_size[0]:
      return x
    return ConvReg(self.out_channels, self.out_size, use_relu=False)(x, train)


class VIDRegressor(nn.Module):
  """VID's variational regressor for one layer (Ahn et al., CVPR 2019; RepDistiller ``VIDLoss``).

  ``x`` [B, H, W, Cs] (the student map, already pooled to the teacher's size) ->
  ``(mean [B, H, W, Ct], variance [Ct])``: mean = conv1x1(Cs->mid) -> ReLU ->
  conv1x1(mid->mid) -> ReLU -> conv1x1(mid->Ct), bias-free (mid = Ct in the reference);
  variance = ``softplus(rho) + eps`` with ``rho`` initialised to
  ``log(exp(init_pred_var - eps) - 1)``, one per teacher channel.
  """

  target_channels: int
  mid_channels: int | None = None
  init_pred_var: float = 5.0
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x):
    mid = self.mid_channels or self.target_channels
    x = nn.relu(TorchConv(mid, (1, 1), use_bias=False)(x))
    x = nn.relu(TorchConv(mid, (1, 1), use_bias=False)(x))
    mean = TorchConv(self.target_channels, (1, 1), use_bias=False)(x)
    rho0 = float(np.log(np.exp(self.init_pred_var - self.eps) - 1.0))
    rho = self.param("log_scale", nn.initializers.constant(rho0), (self.target_channels,))
    return mean, jax.nn.softplus(rho) + self.eps


def vid_match(f_s: jax.Array, f_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The pooling VID applies before its regressor (``common.match_spatial``)."""
  return match_spatial(f_s, f_t)


def vid(mean: jax.Array, variance: jax.Array, f_t: jax.Array) -> jax.Array:
  """VID's negative log-likelihood: mean over all elements of
  ``0.5 * ((mean - f_t)^2 / variance + log variance)``; mean, f_t [B, H, W, C], variance [C]."""
  mean, variance, f_t = float32(mean, variance, f_t)
  nll = 0.5 * (jnp.square(mean - jax.lax.stop_gradient(f_t)) / variance + jnp.log(variance))
  return jnp.mean(nll)


def _poly_kernel(a: jax.Array, b: jax.Array) -> jax.Array:
  """[B, Ca, N], [B, Cb, N] -> [B, Cb, Ca]: ``(b_i . a_j)^2``."""
  return jnp.square(jnp.einsum("bjn,bin->bij", a, b))


@summed_over_layers
def neuron_selectivity_transfer(f_s: Features, f_t: Features) -> jax.Array:
  """Neuron selectivity transfer (Huang & Wang, 2017; RepDistiller ``NSTLoss``).

  f_s [B, H, W, Cs], f_t [B, H', W', Ct] (pooled to one size). Each channel's spatial
  vector is L2-normalised; with the polynomial kernel ``k(a, b) = (a^T b)^2`` over channel
  pairs: ``mean k(T, T) + mean k(S, S) - 2 mean k(S, T)`` (means over B*C*C'). Sequences
  give the sum over layers.
  """
  f_s, f_t = match_spatial(*float32(f_s, f_t))
  to_channels = lambda f: l2_normalize(jnp.transpose(flatten_hw(f), (0, 2, 1)), axis=2)
  s, t = to_channels(f_s), to_channels(jax.lax.stop_gradient(f_t))
  return (jnp.mean(_poly_kernel(t, t)) + jnp.mean(_poly_kernel(s, s))
          - 2.0 * jnp.mean(_poly_kernel(s, t)))


def flatten_hw(f: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H*W, C]."""
  return f.reshape(f.shape[0], -1, f.shape[-1])


def fsp_matrix(bottom: jax.Array, top: jax.Array) -> jax.Array:
  """FSP matrix of two maps of one network: [B, H, W, C1], [B, H', W', C2] (the larger
  pooled to the smaller) -> [B, C2, C1], ``G[c2, c1] = mean_hw top_c2 * bottom_c1``."""
  bottom, top = match_spatial(bottom, top)
  return jnp.einsum("bni,bnj->bji", flatten_hw(bottom), flatten_hw(top)) / (
      bottom.shape[1] * bottom.shape[2])


def check_fsp_channels(s_channels: Sequence[int], t_channels: Sequence[int]) -> None:
  """FSP compares matrices of equal shape: raises unless the channel counts are equal."""
  if list(s_channels) != list(t_channels):
    raise ValueError(f"FSP needs equal channel counts in student and teacher, got "
                     f"{list(s_channels)} and {list(t_channels)}")


def fsp(f_s: Sequence[jax.Array], f_t: Sequence[jax.Array]) -> jax.Array:
  """Flow of solution procedure (Yim et al., CVPR 2017; RepDistiller ``FSP``).

  f_s, f_t: the same number of maps ([B, H, W, C], e.g. stem, stage1..3), channel counts
  equal between student and teacher. For each consecutive pair the FSP matrices are
  compared by the mean over B*C2*C1 of the squared difference; summed over pairs.
  """
  check_fsp_channels([f.shape[-1] for f in f_s], [f.shape[-1] for f in f_t])
  f_s = [float32(f) for f in f_s]
  f_t = [float32(jax.lax.stop_gradient(f)) for f in f_t]
  return sum(jnp.mean(jnp.square(fsp_matrix(f_s[i], f_s[i + 1]) - fsp_matrix(f_t[i], f_t[i + 1])))
             for i in range(len(f_s) - 1))


__all__ = ["ABConnector", "ConvReg", "Paraphraser", "TorchConv", "TorchConvTranspose",
           "Translator", "VIDRegressor", "activation_boundaries", "adaptive_avg_pool",
           "attention_map", "attention_transfer", "check_fsp_channels", "factor_transfer",
           "fitnet", "fsp", "fsp_matrix", "neuron_selectivity_transfer",
           "paraphraser_reconstruction", "vid", "vid_match"]
