"""Properties every objective has: a float32 scalar from float32 or bfloat16 inputs, the
same value under ``jit``, and gradients (to the student side) equal to finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from kd_jax import losses, methods

H = {name: methods.get(name).hparams() for name in methods.names()}  # Each method's defaults.


def r(seed, shape, relu=False):
  x = np.random.RandomState(seed).randn(*shape)
  return np.maximum(x, 0) + 0.1 if relu else x


def _tail(w):
  return lambda f: jnp.mean(jax.nn.relu(f), axis=(1, 2)) @ w


# Normalisers already set (the steady state): on the first batch they are computed from the
# batch itself without gradient, as in the reference, so finite differences would see them move.
_MEMORY = losses.crd_memory_init(jax.random.PRNGKey(0), 20, 6).replace(
    z_student=jnp.float32(30.0), z_teacher=jnp.float32(25.0))
_CONTRAST = np.concatenate([np.arange(3)[:, None], np.arange(3, 18).reshape(3, 5)], axis=1)

# name -> (loss of the student-side arrays, those arrays, the teacher-side arrays)
CASES = {
    "cross_entropy": (lambda z, _: losses.cross_entropy(z, jnp.array([0, 2, 4]), 0.1),
                      [r(0, (3, 5))], [r(1, (1,))]),
    "kd": (lambda z, t: losses.kd(z, t, temperature=H["kd"]["temperature"]), [r(0, (3, 5))],
           [r(1, (3, 5))]),
    "dkd": (lambda z, t: losses.dkd(z, t, jnp.array([1, 0, 4]),
                                    **{k: v for k, v in H["dkd"].items() if k != "logit_stand"}),
            [r(2, (3, 5))], [r(3, (3, 5))]),
    "fitnet": (losses.fitnet, [r(4, (2, 3, 3, 2))], [r(5, (2, 3, 3, 2))]),
    "hcl": (losses.hcl, [r(49, (2, 5, 5, 3))], [r(50, (2, 5, 5, 3))]),  # Levels 4, 2, 1.
    "attention_transfer": (lambda s, t: losses.attention_transfer(s, t, **H["at"]), [r(6, (2, 4, 4, 3))], [r(7, (2, 2, 2, 5))]),
    "factor_transfer": (lambda s, t: losses.factor_transfer(s, t, p1=2.0, p2=1.0), [r(8, (2, 4, 4, 3))], [r(9, (2, 4, 4, 2))]),
    "activation_boundaries": (lambda s, t: losses.activation_boundaries([s], [t], **H["ab"]),
                              [r(10, (2, 3, 3, 2))], [r(11, (2, 3, 3, 2))]),
    "vid": (lambda m, v, t: losses.vid(m, v, t), [r(12, (2, 3, 3, 2)), r(13, (2,), relu=True)],
            [r(14, (2, 3, 3, 2))]),
    "neuron_selectivity_transfer": (losses.neuron_selectivity_transfer, [r(15, (2, 4, 4, 3))],
                                    [r(16, (2, 4, 4, 2))]),
    "fsp": (lambda a, b, t1, t2: losses.fsp([a, b], [t1, t2]),
            [r(17, (2, 4, 4, 2)), r(18, (2, 2, 2, 3))], [r(19, (2, 4, 4, 2)), r(20, (2, 2, 2, 3))]),
    "similarity_preserving": (losses.similarity_preserving, [r(21, (4, 2, 2, 3))], [r(22, (4, 3))]),
    "correlation_congruence": (losses.correlation_congruence, [r(23, (4, 3)), r(24, (4, 3))], []),
    "rkd": (lambda s, t: losses.rkd(s, t, **H["rkd"]), [r(25, (5, 4))], [r(26, (5, 3))]),
    "pkt": (lambda s, t: losses.pkt(s, t, **H["pkt"]), [r(27, (5, 4), relu=True)], [r(28, (5, 3), relu=True)]),
    "crd": (lambda s, t: losses.crd(losses.l2_normalize(s), losses.l2_normalize(t), _MEMORY,
                                    jnp.arange(3), jnp.asarray(_CONTRAST), temperature=0.07,
                                    momentum=0.5)[0],
            [r(29, (3, 6)), r(30, (3, 6))], []),
    "mean_matching": (losses.mean_matching, [r(31, (2, 3, 3, 4))], [r(32, (2, 3, 3, 4))]),
    "stat_matching": (lambda s, t: losses.stat_matching(s, t, **H["stat_matching"]), [r(33, (2, 3, 3, 4))], [r(34, (2, 3, 3, 4))]),
    "adain_loss": (lambda s, t: losses.adain_loss(s, t, _tail(jnp.asarray(r(35, (4, 3)))),
                                                  eps=1e-5, unbiased=False, kind="mse",
                                                  temperature=1.0),
                   [r(36, (2, 3, 3, 4))], [r(37, (2, 3, 3, 4))]),
    "teacher_head_mse": (lambda s, t: losses.teacher_head_mse(s, t, _tail(jnp.asarray(r(38, (4, 3))))),
                         [r(39, (2, 3, 3, 4))], [r(40, (2, 3))]),
    "logit_standardize": (lambda z, t: losses.kd(losses.logit_standardize(z),
                                                 losses.logit_standardize(t), temperature=2.0),
                          [r(41, (3, 5))], [r(42, (3, 5))]),
    "dist": (lambda z, t: losses.dist(z, t, beta=1.0, gamma=2.0, temperature=4.0),
             [r(43, (3, 5))], [r(44, (3, 5))]),
    "nkd": (lambda z, t: losses.nkd(z, t, jnp.array([1, 0, 4]), **H["nkd"]),
            [r(45, (3, 5))], [r(46, (3, 5))]),
    "wttm": (lambda z, t: losses.wttm(z, t, gamma=0.2), [r(47, (3, 5))], [r(48, (3, 5))]),
}


def _args(name, dtype):
  fn, student, teacher = CASES[name]
  return fn, [jnp.asarray(x, dtype) for x in student], [jnp.asarray(x, dtype) for x in teacher]


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_scalar_and_same_value_under_jit(name):
  fn, s, t = _args(name, jnp.float32)
  eager = fn(*s, *t)
  jitted = jax.jit(fn)(*s, *t)
  assert eager.shape == () and eager.dtype == jnp.float32 and bool(jnp.isfinite(eager))
  np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bfloat16_inputs_give_a_finite_float32_loss(name):
  fn, s, t = _args(name, jnp.bfloat16)
  got = jax.jit(fn)(*s, *t)
  assert got.dtype == jnp.float32 and bool(jnp.isfinite(got))
  _, s32, t32 = _args(name, jnp.float32)
  # bfloat16 has an 8-bit mantissa: the loss agrees to a few percent.
  want = float(jax.jit(fn)(*[x.astype(jnp.bfloat16).astype(jnp.float32) for x in s32 + t32]))
  np.testing.assert_allclose(float(got), want, rtol=3e-2, atol=1e-3)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
  with jax.enable_x64(True):
    fn, s, t = _args(name, jnp.float64)
    check_grads(jax.jit(lambda *xs: fn(*xs, *t)), s, order=1, modes=["rev"], eps=1e-6, atol=1e-5, rtol=1e-5)
