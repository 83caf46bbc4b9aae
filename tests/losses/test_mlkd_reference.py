"""MLKD equals its authors' code (``torch_reference_baselines.MLKD``: the logit-
standardization authors' MLKD.py, which is KD_ours.py with ``logit_stand``) in value and in
gradient w.r.t. the student's logits on both views: the ``mlkd`` objective (weight = their KD
weight) plus ``ce`` on each view (``view="strong"``) against the sum of the reference's four
losses. Three temperatures and logit scales, with and without logit standardization; 7 x 10
(odd batch: the median is a confidence), 8 x 10 (even: between two) and 33 x 100; float32
within 1e-5 relative of the float64 reference, float64 within 1e-10."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from kd_jax import losses, methods
from kd_jax.methods import Context, Outputs
from kd_jax.methods.mlkd import STRONG, below_median_fraction, confidence_fractions
from tests.losses import torch_reference_baselines as ref

SHAPES = [(7, 10), (8, 10), (33, 100)]
TOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}
CE, KD = 0.1, 0.9


def rel_err(got, want):
  want = np.asarray(want.detach().numpy() if isinstance(want, torch.Tensor) else want,
                    np.float64).reshape(-1)
  got = np.asarray(got, np.float64).reshape(-1)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


@functools.lru_cache(maxsize=None)
def _compiled(logit_stand):
  def total(zs_w, zs_s, zt_w, zt_s, y, t):
    mlkd = methods.get("mlkd")(temperature=t, logit_stand=logit_stand)
    ctx = Context(None, None, Outputs(zs_w, {}), Outputs(zt_w, {}), {"label": y}, None, None,
                  None, views={STRONG: (Outputs(zs_s, {}), Outputs(zt_s, {}))})
    return (KD * mlkd.loss(ctx) + CE * losses.cross_entropy(zs_w, y)
            + CE * losses.cross_entropy(zs_s, y))

  return jax.jit(jax.value_and_grad(total, argnums=(0, 1)))


def _inputs(shape, scale, seed=0):
  rng = np.random.RandomState(seed + shape[0] * 1000 + shape[1])
  b, c = shape
  return [rng.randn(b, c) * scale for _ in range(4)] + [rng.randint(0, c, b)]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("t,scale,logit_stand", [(4.0, 1.0, False), (2.0, 3.0, True),
                                                 (1.0, 10.0, False), (4.0, 3.0, True)])
def test_mlkd_matches_authors_code(t, scale, logit_stand, shape, dtype):
  zs_w, zs_s, zt_w, zt_s, y = _inputs(shape, scale)
  if dtype == jnp.float32:  # The reference sees the float32 inputs, in float64.
    zs_w, zs_s, zt_w, zt_s = (z.astype(np.float32).astype(np.float64)
                              for z in (zs_w, zs_s, zt_w, zt_s))
  with jax.enable_x64(dtype == jnp.float64):
    cast = lambda z: jnp.asarray(z, dtype)
    value, (g_w, g_s) = _compiled(logit_stand)(cast(zs_w), cast(zs_s), cast(zt_w), cast(zt_s),
                                                jnp.asarray(y), cast(t))
  s_w, s_s = (torch.tensor(z, requires_grad=True) for z in (zs_w, zs_s))
  out = ref.MLKD(t, CE, KD, logit_stand).forward_train(
      s_w, s_s, torch.tensor(zt_w), torch.tensor(zt_s), torch.from_numpy(y))
  want = sum(out.values())
  want.backward()
  errs = [rel_err(value, want), rel_err(g_w, s_w.grad), rel_err(g_s, s_s.grad)]
  assert max(errs) < TOL[dtype], errs


def test_the_masks_act_as_fractions_at_most_the_median():
  """Odd batch: the median is the middle confidence, 3 of 5 are at most it; even: the
  midpoint of the two middle ones, 2 of 4; ties: every one."""
  assert float(below_median_fraction(jnp.asarray([0.9, 0.1, 0.5, 0.7, 0.3]))) == pytest.approx(0.6)
  assert float(below_median_fraction(jnp.asarray([0.9, 0.1, 0.5, 0.7]))) == 0.5
  assert float(below_median_fraction(jnp.asarray([0.4, 0.4, 0.4, 0.4]))) == 1.0
  # Teacher rows: two confident, two not; class sums [1.7, 1.3, 1.0] -> at most 1.3: 2 of 3.
  p = np.asarray([[0.9, 0.05, 0.05], [0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.4, 0.5]])
  f, f_c = confidence_fractions(jnp.log(jnp.asarray(p, jnp.float32)))
  assert (float(f), float(f_c)) == pytest.approx((0.5, 2 / 3), rel=1e-6)


def test_mlkd_gives_the_teacher_no_gradient():
  zs_w, zs_s, zt_w, zt_s, y = (jnp.asarray(z, jnp.float32) for z in _inputs((7, 10), 3.0))

  def loss(zt_w, zt_s):
    ctx = Context(None, None, Outputs(zs_w, {}), Outputs(zt_w, {}), {"label": y}, None, None,
                  None, views={STRONG: (Outputs(zs_s, {}), Outputs(zt_s, {}))})
    return methods.get("mlkd")().loss(ctx)

  g_w, g_s = jax.grad(loss, argnums=(0, 1))(zt_w, zt_s)
  assert not np.any(np.asarray(g_w)) and not np.any(np.asarray(g_s))
