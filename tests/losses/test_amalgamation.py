"""CFL (common feature learning): MMD, reconstruction, the common-feature block; and the
logit losses of several teachers (soft-target cross-entropy, L2 on logits)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses
from kd_jax.methods.cfl import CFL

MMD_SIGMAS = CFL().sigmas  # CFL's kernel widths, the method's default.


def mmd2(x, y, sigmas=MMD_SIGMAS):
  return losses.mmd2(x, y, sigmas=sigmas)


def test_mmd_of_identical_samples_is_exactly_zero():
  """The xx, yy and xy distances are the same numbers: no rounding is left over."""
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 2, 2, 5))
  assert float(mmd2(x, x)) == 0.0


def test_mmd_by_hand_with_one_kernel_width():
  """x = (e1, e2), y = (e1, e1), sigma = 1, K(d) = exp(-d/2): the means of K over the
  pairs are (2 + 2/e)/4 (xx), 1 (yy) and (2 + 2/e)/4 (xy), so MMD^2 = (1 - 1/e)/2."""
  x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  y = jnp.array([[1.0, 0.0], [1.0, 0.0]])
  assert float(losses.mmd2(x, y, sigmas=(1.0,))) == pytest.approx((1 - math.exp(-1)) / 2,
                                                                  rel=1e-6)


def test_mmd_normalises_rows_so_scale_does_not_matter():
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
  y = jax.random.normal(jax.random.PRNGKey(2), (4, 8))
  assert float(mmd2(3.0 * x, 0.5 * y)) == pytest.approx(float(mmd2(x, y)),
                                                               rel=1e-5)


def _mmd2_float64(x, y, sigmas=MMD_SIGMAS) -> float:
  """CFL's MMD^2 in float64 numpy: rows flattened and l2-normalised, distances as summed
  squared differences."""
  x, y = (np.asarray(v, np.float64).reshape(len(v), -1) for v in (x, y))
  x, y = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in (x, y))

  def kernel_mean(a, b):
    d = np.maximum(np.sum(np.square(a[:, None] - b[None]), -1), 1e-12)
    return sum(np.mean(np.exp(-d / (2 * s * s))) for s in sigmas)

  return max(kernel_mean(x, x) + kernel_mean(y, y) - 2 * kernel_mean(x, y), 0.0)


def test_mmd_in_float32_matches_float64_where_the_expansion_cancelled():
  """The case that depended on the CPU: |a|^2 + |b|^2 - 2ab left ~1e-7 on the diagonal of
  normalised rows, which the sigma = 0.001 kernel turned into a 0.25% error."""
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
  y = jax.random.normal(jax.random.PRNGKey(2), (4, 8))
  assert float(mmd2(3.0 * x, 0.5 * y)) == pytest.approx(_mmd2_float64(x, y), rel=1e-5)


@pytest.mark.parametrize("kind", ["independent", "scaled", "near_identical", "shared_rows"])
def test_mmd_in_float32_matches_float64_on_random_batches(kind):
  """25 random cases of each kind (100 in all): float32 within 1e-5 relative of float64.
  (Closer batches keep an absolute error of ~1e-7, float32's resolution of kernel values
  near 1: at 0.1% moves MMD^2 ~ 2e-3 is off by ~4e-5 relative.)"""
  rng = np.random.RandomState(["independent", "scaled", "near_identical", "shared_rows"].index(kind))
  for case in range(25):
    b, dim = (2, 18) if case % 2 else (7, 64)  # Two shapes: two compilations.
    x = rng.randn(b, dim).astype(np.float32)
    y = rng.randn(b, dim).astype(np.float32)
    if kind == "scaled":
      x, y = x * rng.uniform(0.01, 100.0), y * rng.uniform(0.01, 100.0)
    elif kind == "near_identical":  # Rows moved by 0.3-3% of their norm: MMD^2 ~ 1e-2.
      y = (x + rng.uniform(3e-3, 3e-2) * rng.randn(b, dim)).astype(np.float32)
    elif kind == "shared_rows":
      y[: b // 2] = x[: b // 2]
    want = _mmd2_float64(x, y)
    got = float(mmd2(jnp.asarray(x), jnp.asarray(y)))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-9), case


def test_reconstruction_is_the_mean_squared_error_and_zero_for_an_identity_map():
  f = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 3, 4))
  assert float(losses.reconstruction(f, f)) == 0.0
  assert float(losses.reconstruction(jnp.zeros((2, 3)), jnp.full((2, 3), 2.0))) == 4.0


def test_cfl_adds_mmd_per_teacher_and_weighted_reconstruction():
  k = jax.random.split(jax.random.PRNGKey(4), 4)
  h_s, h_1, h_2 = (jax.random.normal(kk, (4, 2, 2, 3)) for kk in k[:3])
  f = jax.random.normal(k[3], (4, 2, 2, 5))
  got = losses.cfl(h_s, [h_1, h_2], [f, jnp.zeros_like(f)], [f, f], recon_weight=0.5,
                   sigmas=MMD_SIGMAS)
  want = (mmd2(h_s, h_1) + mmd2(h_s, h_2)
          + 0.5 * (0.0 + float(jnp.mean(f * f))))
  assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_cfl_pools_the_larger_common_feature_to_the_smaller_size():
  h_s = jax.random.normal(jax.random.PRNGKey(5), (4, 2, 2, 3))
  h_t = jax.random.normal(jax.random.PRNGKey(6), (4, 1, 1, 3))
  f = jnp.ones((4, 1, 1, 2))  # Reconstructed exactly: only the MMD term is left.
  got = losses.cfl(h_s, [h_t], [f], [f], recon_weight=1.0, sigmas=MMD_SIGMAS)
  want = mmd2(jnp.mean(h_s, axis=(1, 2), keepdims=True), h_t)
  assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_soft_cross_entropy_is_kd_plus_the_teacher_entropy():
  zs = jax.random.normal(jax.random.PRNGKey(7), (5, 6))
  zt = jax.random.normal(jax.random.PRNGKey(8), (5, 6))
  pt = jax.nn.softmax(zt / 2.0)
  entropy = -jnp.mean(jnp.sum(pt * jnp.log(pt), -1))
  got = losses.soft_cross_entropy(zs, zt, temperature=2.0)
  assert float(got) == pytest.approx(float(losses.kd(zs, zt, temperature=2.0) + 4.0 * entropy), rel=1e-5)
  # Uniform targets and a uniform student: log C.
  assert float(losses.soft_cross_entropy(jnp.zeros((2, 4)), jnp.zeros((2, 4)), temperature=1.0)) == \
      pytest.approx(math.log(4), rel=1e-6)


def test_logit_l2_sums_over_classes_and_averages_over_the_batch():
  zs = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  zt = jnp.array([[0.0, 0.0], [3.0, 0.0]])
  assert float(losses.logit_l2(zs, zt)) == pytest.approx((1 + 4 + 9) / 2)
  g = jax.grad(lambda t: losses.logit_l2(zs, t))(zt)
  np.testing.assert_array_equal(g, 0.0)  # The teacher side is constant.
