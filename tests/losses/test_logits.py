"""Cross-entropy and Hinton KD on hand-derivable cases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses


def test_kd_of_identical_logits_is_zero():
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 7))
  assert float(losses.kd(z, z, temperature=4.0)) == pytest.approx(0.0, abs=1e-6)


def test_kd_two_class_closed_form():
  # T = 2: teacher [ln 3, 0] / 2 ... use logits whose softmax at T is known.
  t = 2.0
  teacher = jnp.array([[2 * np.log(3.0), 0.0]])  # softmax(/2) = [3/4, 1/4]
  student = jnp.array([[0.0, 0.0]])               # softmax = [1/2, 1/2]
  kl = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)
  assert float(losses.kd(student, teacher, temperature=t)) == pytest.approx(t * t * kl, rel=1e-6)


def test_kd_is_batch_mean():
  a = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  b = jnp.array([[0.0, 0.0], [0.0, 0.0]])
  first = losses.kd(a[:1], b[:1], 1.0)
  assert float(losses.kd(a, b, 1.0)) == pytest.approx(float(first) / 2, rel=1e-6)


def test_kd_gives_no_gradient_to_teacher():
  s, t = jnp.array([[0.3, -0.2, 0.1]]), jnp.array([[1.0, 0.0, -1.0]])
  assert float(jnp.abs(jax.grad(losses.kd, argnums=1)(s, t)).sum()) == 0.0


def test_cross_entropy_uniform_logits():
  logits = jnp.zeros((3, 5))
  assert float(losses.cross_entropy(logits, jnp.array([0, 1, 4]))) == pytest.approx(np.log(5))


def test_cross_entropy_label_smoothing():
  logits = jnp.array([[np.log(4.0), 0.0]])  # p = [0.8, 0.2]
  want = -(0.95 * np.log(0.8) + 0.05 * np.log(0.2))
  got = losses.cross_entropy(logits, jnp.array([0]), label_smoothing=0.1)
  assert float(got) == pytest.approx(want, rel=1e-6)


def test_cross_entropy_mask_ignores_padding():
  logits = jnp.array([[0.0, 0.0], [100.0, -100.0]])
  got = losses.cross_entropy(logits, jnp.array([0, 1]), mask=jnp.array([1.0, 0.0]))
  assert float(got) == pytest.approx(np.log(2))
