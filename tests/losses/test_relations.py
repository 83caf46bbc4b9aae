"""Relational losses: hand-derived values and the invariances each method claims."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses, methods
from tests.losses.helpers import run

RKD = methods.get("rkd").hparams()  # distance 25, angle 50
PKT = methods.get("pkt").hparams()  # eps 1e-7


def rand(seed, shape):
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def test_sp_is_zero_for_identical_features_and_invariant_to_scale():
  s, t = rand(0, (6, 4, 4, 3)), rand(1, (6, 2, 2, 8))
  assert float(run(losses.similarity_preserving, t, t)) == pytest.approx(0.0, abs=1e-10)
  base = float(run(losses.similarity_preserving, s, t))
  assert float(run(losses.similarity_preserving, 5.0 * s, t)) == pytest.approx(base, rel=1e-5)


def test_sp_is_invariant_to_a_batch_permutation_applied_to_both():
  s, t = rand(2, (6, 4, 4, 3)), rand(3, (6, 2, 2, 8))
  perm = np.array([5, 2, 0, 4, 1, 3])
  base = float(run(losses.similarity_preserving, s, t))
  assert float(run(losses.similarity_preserving, s[perm], t[perm])) == pytest.approx(base, rel=1e-5)


def test_cc_by_hand():
  # delta = [1, 2, 3] (D = 1): products of neighbours 2 and 6, mean 4.
  e_s = jnp.array([[1.0], [2.0], [3.0]])
  assert float(run(losses.correlation_congruence, e_s, jnp.zeros((3, 1)))) == pytest.approx(4.0)


def test_rkd_distance_term_on_three_points_by_hand():
  s = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])   # distances 1, 1, sqrt(2)
  t = jnp.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])   # distances 1, 2, 1
  ms, mt = (2 + np.sqrt(2)) / 3, 4 / 3                  # means of the positive entries
  pairs = [(1 / ms, 1 / mt), (1 / ms, 2 / mt), (np.sqrt(2) / ms, 1 / mt)]
  # Each pair appears twice in the 3x3 matrix; all |d| < 1: smooth-L1 = d^2 / 2; 9 entries.
  want = 2 * sum(0.5 * (a - b) ** 2 for a, b in pairs) / 9
  got = run(losses.rkd, s, t, distance_weight=1.0, angle_weight=0.0)
  assert float(got) == pytest.approx(want, rel=1e-5)


def test_rkd_is_zero_between_a_configuration_and_its_scaled_translate():
  s = rand(4, (8, 5))
  assert float(run(losses.rkd, s, 3.0 * s + 1.0, **RKD)) == pytest.approx(0.0, abs=1e-5)


def test_rkd_angle_term_is_invariant_to_batch_permutation():
  s, t = rand(5, (7, 4)), rand(6, (7, 6))
  perm = np.array([6, 3, 1, 0, 5, 2, 4])
  base = float(run(losses.rkd, s, t, **RKD))
  assert float(run(losses.rkd, s[perm], t[perm], **RKD)) == pytest.approx(base, rel=1e-5)


def test_pkt_is_zero_for_identical_features_and_invariant_to_row_scale():
  s, t = rand(7, (6, 8)), rand(8, (6, 8))
  assert float(run(losses.pkt, t, t, **PKT)) == pytest.approx(0.0, abs=1e-7)
  scale = np.arange(1.0, 7.0, dtype=np.float32)[:, None]
  assert float(run(losses.pkt, s * scale, t, **PKT)) == pytest.approx(
      float(run(losses.pkt, s, t, **PKT)), rel=1e-4)


def test_pkt_zero_feature_row_gives_finite_gradient():
  s = rand(9, (4, 8))
  s[0] = 0.0
  g = jax.jit(jax.grad(lambda s, t: losses.pkt(s, t, **PKT)))(s, rand(10, (4, 8)))
  assert bool(jnp.all(jnp.isfinite(g)))
