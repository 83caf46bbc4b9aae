"""Feature statistics: channel moments, AdaIN, and the losses built on them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses
from tests.losses.helpers import run

STAT = dict(eps=1e-5, unbiased=False)
ADAIN = dict(STAT, kind="mse", temperature=1.0)


def rand(seed, shape, scale=1.0, shift=0.0):
  return (scale * np.random.RandomState(seed).randn(*shape) + shift).astype(np.float32)


def test_channel_mean_std_by_hand():
  f = jnp.array([1.0, 3.0, 5.0, 7.0]).reshape(1, 2, 2, 1)  # mean 4, biased var 5
  mean, std = run(losses.channel_mean_std, f, eps=0.0, unbiased=False)
  assert float(mean[0, 0]) == pytest.approx(4.0) and float(std[0, 0]) == pytest.approx(np.sqrt(5.0))
  _, std_unbiased = run(losses.channel_mean_std, f, eps=0.0, unbiased=True)
  assert float(std_unbiased[0, 0]) == pytest.approx(np.sqrt(20.0 / 3.0))


def test_mean_matching_by_hand():
  s = jnp.ones((2, 3, 3, 4)) * 2.0
  t = jnp.zeros((2, 3, 3, 4))
  assert float(run(losses.mean_matching, s, t)) == pytest.approx(4.0)


def test_adain_output_carries_the_style_statistics():
  content, style = rand(0, (2, 6, 6, 3)), rand(1, (2, 4, 4, 3), scale=3.0, shift=2.0)
  out = run(losses.adain, content, style, eps=0.0, unbiased=False)
  moments = lambda f: run(losses.channel_mean_std, f, eps=0.0, unbiased=False)
  np.testing.assert_allclose(np.asarray(moments(out)[0]), np.asarray(moments(style)[0]),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(moments(out)[1]), np.asarray(moments(style)[1]),
                             rtol=1e-4)


def test_adain_with_its_own_statistics_is_the_identity():
  f = rand(2, (2, 5, 5, 3))
  np.testing.assert_allclose(np.asarray(run(losses.adain, f, f, **STAT)), np.asarray(f), rtol=1e-5, atol=1e-5)


def test_stat_matching_is_zero_for_equal_statistics_and_positive_otherwise():
  f = rand(3, (2, 4, 4, 3))
  assert float(run(losses.stat_matching, f[:, ::-1], f, **STAT)) == pytest.approx(0.0, abs=1e-10)
  assert float(run(losses.stat_matching, 2.0 * f, f, **STAT)) > 0.0


def _tail(w):
  """A small teacher tail: ReLU -> global average pool -> linear."""
  return lambda f: jnp.mean(jax.nn.relu(f), axis=(1, 2)) @ w


def test_adain_loss_is_zero_when_the_student_has_the_teacher_statistics():
  w = rand(4, (3, 5))
  f_t = rand(5, (2, 4, 4, 3))
  f_s = f_t[:, ::-1, ::-1]  # spatially rearranged: same per-channel statistics
  assert float(run(losses.adain_loss, f_s, f_t, _tail(w), **ADAIN)) == pytest.approx(0.0, abs=1e-10)
  assert float(run(losses.adain_loss, 3.0 * f_s + 1.0, f_t, _tail(w), **ADAIN)) > 0.0


def test_adain_loss_reads_only_the_student_statistics():
  w = rand(6, (3, 5))
  f_t, f_s = rand(7, (2, 4, 4, 3)), rand(8, (2, 4, 4, 3), scale=2.0)
  perm = np.random.RandomState(9).permutation(16)
  shuffled = f_s.reshape(2, 16, 3)[:, perm].reshape(2, 4, 4, 3)
  a = float(run(losses.adain_loss, f_s, f_t, _tail(w), **ADAIN))
  assert float(run(losses.adain_loss, shuffled, f_t, _tail(w), **ADAIN)) == pytest.approx(a, rel=1e-5)
  assert float(run(losses.adain_loss, f_s, f_t, _tail(w), **STAT, kind="kl",
                   temperature=2.0)) >= 0.0


def test_teacher_head_mse_by_hand():
  head = lambda f: jnp.mean(f, axis=(1, 2))
  f_s = jnp.ones((2, 2, 2, 3))
  assert float(run(losses.teacher_head_mse, f_s, jnp.zeros((2, 3)), head)) == pytest.approx(1.0)
