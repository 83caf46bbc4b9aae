"""Layers shared by the model zoo, initialised as in PyTorch (so converted and
from-scratch models start from the same distributions as the references)."""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.Linear default: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_linear_bias_init(fan_in: int):
  bound = 1.0 / jnp.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class TorchDense(nn.Module):
  """``torch.nn.Linear`` with its default initialisation. [..., in] -> [..., features]."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.features, dtype=self.dtype, kernel_init=linear_kernel_init,
                    bias_init=torch_linear_bias_init(x.shape[-1]))(x)


def conv(features: int, kernel: int, stride: int = 1, padding: int | None = None,
         dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """Bias-free NHWC convolution with PyTorch-style symmetric padding (default: kernel // 2)."""
  pad = kernel // 2 if padding is None else padding
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
                 kernel_init=conv_kernel_init, name=name)


def batch_norm(train: bool, dtype: Any = jnp.float32, name: str | None = None) -> nn.BatchNorm:
  """``torch.nn.BatchNorm2d`` defaults: momentum 0.1 (flax 0.9), eps 1e-5, weight 1, bias 0."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name)


global_avg_pool = functools.partial(jnp.mean, axis=(1, 2))
