"""Shared helpers: PyTorch's normalize and adaptive average pooling on NHWC."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from kd_jax import losses
from tests.losses.helpers import run


def test_adaptive_avg_pool_overlapping_windows_by_hand():
  x = jnp.array([1.0, 2.0, 4.0]).reshape(1, 1, 3, 1)  # width 3 -> 2: windows [0,1], [1,2]
  got = run(losses.adaptive_avg_pool, x, (1, 2))
  np.testing.assert_allclose(np.asarray(got).ravel(), [1.5, 3.0])


@pytest.mark.parametrize("size,out", [((8, 8), (4, 4)), ((7, 7), (3, 3)), ((5, 9), (2, 4))])
def test_adaptive_avg_pool_equals_pytorch(size, out):
  x = np.random.RandomState(0).randn(2, *size, 3).astype(np.float32)
  want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), out)
  got = run(losses.adaptive_avg_pool, jnp.asarray(x), out)
  np.testing.assert_allclose(np.asarray(got), want.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


def test_match_spatial_pools_the_larger_map_to_a_square():
  s, t = jnp.ones((2, 16, 16, 3)), jnp.ones((2, 8, 8, 5))
  a, b = losses.match_spatial(s, t)
  assert a.shape == (2, 8, 8, 3) and b.shape == (2, 8, 8, 5)
  a, b = losses.match_spatial(t, s)
  assert a.shape == (2, 8, 8, 5) and b.shape == (2, 8, 8, 3)


def test_l2_normalize_of_zero_row_is_zero_with_zero_gradient():
  x = jnp.zeros((1, 3))
  assert float(jnp.abs(losses.l2_normalize(x)).sum()) == 0.0
  g = jax.grad(lambda v: losses.l2_normalize(v).sum())(x)
  assert bool(jnp.all(jnp.isfinite(g)))


def test_smooth_l1_is_quadratic_below_one_and_linear_above():
  assert float(run(losses.smooth_l1, jnp.array([0.5]), jnp.array([0.0]))) == pytest.approx(0.125)
  assert float(run(losses.smooth_l1, jnp.array([3.0]), jnp.array([0.0]))) == pytest.approx(2.5)
