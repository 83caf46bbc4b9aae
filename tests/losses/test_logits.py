"""Cross-entropy and Hinton KD on hand-derivable cases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses, methods

# The method's defaults (alpha 1, beta 8, T 4, warm-up 20), less its logit_stand switch.
DKD = {k: v for k, v in methods.get("dkd").hparams().items() if k != "logit_stand"}


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
  first = losses.kd(a[:1], b[:1], temperature=1.0)
  assert float(losses.kd(a, b, temperature=1.0)) == pytest.approx(float(first) / 2, rel=1e-6)


def test_kd_gives_no_gradient_to_teacher():
  s, t = jnp.array([[0.3, -0.2, 0.1]]), jnp.array([[1.0, 0.0, -1.0]])
  g = jax.grad(lambda t: losses.kd(s, t, temperature=4.0))(t)
  assert float(jnp.abs(g).sum()) == 0.0


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


def test_dkd_of_identical_logits_is_zero():
  z = np.random.RandomState(1).randn(4, 10).astype(np.float32)
  y = np.array([0, 3, 9, 2])
  assert float(losses.dkd(z, z, y, **DKD)) == pytest.approx(0.0, abs=1e-5)


def test_dkd_decomposes_classical_kd():
  """KD = TCKD + (1 - p_T,gt) * NCKD (the paper's Eq. 4), for one example."""
  zs = jnp.array([[1.0, -0.5, 0.3, 2.0]])
  zt = jnp.array([[0.2, 1.5, -1.0, 0.7]])
  y, t = jnp.array([1]), 2.0
  pt_gt = float(jax.nn.softmax(zt / t)[0, 1])
  tckd = losses.dkd(zs, zt, y, alpha=1.0, beta=0.0, temperature=t, warmup=20.0)
  nckd = losses.dkd(zs, zt, y, alpha=0.0, beta=1.0, temperature=t, warmup=20.0)
  assert float(tckd) + (1 - pt_gt) * float(nckd) == pytest.approx(
      float(losses.kd(zs, zt, temperature=t)), rel=1e-5)


def test_dkd_tckd_two_class_closed_form():
  # Two classes: the binary split is the full distribution, NCKD is 0 (one non-target class).
  zs, zt, y = jnp.array([[0.0, 0.0]]), jnp.array([[np.log(3.0), 0.0]]), jnp.array([0])
  kl = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)
  got = losses.dkd(zs, zt, y, alpha=1.0, beta=8.0, temperature=1.0, warmup=20.0)
  assert float(got) == pytest.approx(kl, rel=1e-5)


def test_dkd_warmup_factor_is_epoch_over_warmup_capped_at_one():
  zs = np.random.RandomState(2).randn(3, 5).astype(np.float32)
  zt = np.random.RandomState(3).randn(3, 5).astype(np.float32)
  y = np.array([0, 1, 2])
  dkd = jax.jit(lambda *a, **k: losses.dkd(*a, alpha=1.0, beta=8.0, temperature=4.0, **k))
  full = float(dkd(zs, zt, y, warmup=20.0))
  assert float(dkd(zs, zt, y, epoch=5.0, warmup=20.0)) == pytest.approx(0.25 * full, rel=1e-6)
  assert float(dkd(zs, zt, y, epoch=40.0, warmup=20.0)) == pytest.approx(full, rel=1e-6)


def test_dkd_gives_no_gradient_to_teacher():
  s, t = jnp.array([[0.3, -0.2, 0.1]]), jnp.array([[1.0, 0.0, -1.0]])
  g = jax.grad(lambda t: losses.dkd(s, t, jnp.array([2]), **DKD))(t)
  assert float(jnp.abs(g).sum()) == 0.0
