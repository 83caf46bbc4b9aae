"""Layers shared by the model zoo, initialised as in PyTorch (so converted and
from-scratch models start from the same distributions as the references)."""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax.models import conv as conv_lib

# torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.Linear default: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_linear_bias_init(fan_in: int):
  bound = 1.0 / jnp.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class TorchDense(nn.Module):
  """``torch.nn.Linear``. [..., in] -> [..., features]. Initialisation: PyTorch's default,
  or ``init='normal'`` (N(0, 0.01), bias 0: VGG, MobileNetV2) / ``'zero_bias'`` (default
  weights, bias 0: WRN), as the reference models set it."""

  features: int
  dtype: Any = jnp.float32
  init: str = "torch"

  @nn.compact
  def __call__(self, x):
    kernel_init = nn.initializers.normal(0.01) if self.init == "normal" else linear_kernel_init
    bias_init = (torch_linear_bias_init(x.shape[-1]) if self.init == "torch"
                 else nn.initializers.zeros)
    return nn.Dense(self.features, dtype=self.dtype, kernel_init=kernel_init,
                    bias_init=bias_init)(x)


# torch.nn.Conv2d's own default (kaiming_uniform_(a=sqrt(5))), for models that keep it.
torch_default_conv_init = linear_kernel_init


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
                   use_bias=self.use_bias, kernel_init=torch_default_conv_init,
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


def conv(features: int, kernel: int, stride: int = 1, padding: int | None = None,
         dtype: Any = jnp.float32, name: str | None = None, groups: int = 1,
         use_bias: bool = False, kernel_init=conv_kernel_init) -> nn.Conv:
  """NHWC convolution (bias-free by default) with PyTorch-style symmetric padding
  (default ``kernel // 2``); ``groups`` as in ``torch.nn.Conv2d``; bias initialised to 0.
  On CPU its weight gradient is computed by matmuls (``kd_jax.models.conv``)."""
  pad = kernel // 2 if padding is None else padding
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=use_bias, dtype=dtype,
                 feature_group_count=groups, kernel_init=kernel_init,
                 bias_init=nn.initializers.zeros, name=name,
                 conv_general_dilated=conv_lib.conv_general_dilated)


def batch_norm(train: bool, dtype: Any = jnp.float32, name: str | None = None) -> nn.BatchNorm:
  """``torch.nn.BatchNorm2d`` defaults: momentum 0.1 (flax 0.9), eps 1e-5, weight 1, bias 0."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name)


global_avg_pool = functools.partial(jnp.mean, axis=(1, 2))


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
  """ShuffleNet channel shuffle on NHWC, equal to PyTorch's NCHW
  ``view(N, g, C/g, H, W).permute(0, 2, 1, 3, 4)``: channel ``i*C/g + j`` moves to ``j*g + i``."""
  n, h, w, c = x.shape
  return x.reshape(n, h, w, groups, c // groups).swapaxes(3, 4).reshape(n, h, w, c)
