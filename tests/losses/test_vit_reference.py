"""The ViT distillation methods equal their authors' code (``torch_reference_vit``) in value
and in gradient. DeiT: ``objectives = {ce: 1 - alpha, deit: alpha}`` through the registered
methods (their defaults checked too) against ``DistillationLoss`` with alpha, on the class
and distillation heads' logits; three temperatures and logit scales, 7 x 10 and 33 x 100
logits; float32 within 1e-5 relative of the float64 reference, float64 within 1e-10."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from kd_jax import methods
from kd_jax.methods import Context, Outputs
from kd_jax.methods.deit import DIST_HEAD
from tests.losses import torch_reference_vit as ref
from tests.losses.test_baselines_reference import DTYPES, SHAPES, TOL, rel_err


def _inputs(shape, scale, dtype):
  rng = np.random.RandomState(shape[1])
  b, c = shape
  z_cls, z_dist, z_t = (rng.randn(b, c) * scale for _ in range(3))
  y = rng.randint(0, c, b)
  if dtype == jnp.float32:  # The reference sees the float32 inputs, in float64.
    z_cls, z_dist, z_t = (z.astype(np.float32).astype(np.float64) for z in (z_cls, z_dist, z_t))
  return z_cls, z_dist, z_t, y


def _kd_jax_deit(hparams, alpha, z_cls, z_dist, z_t, y, dtype):
  """(loss, d/d class logits, d/d dist logits) of (1 - alpha) ce + alpha deit."""
  ce, deit = methods.get("ce")(), methods.get("deit")(**hparams)

  def total(zc, zd, zt):
    student = Outputs(zc, {DIST_HEAD: zd})
    ctx = lambda s_maps, t_maps: Context(s_maps, t_maps, student, Outputs(zt, {}),
                                         {"label": jnp.asarray(y)}, None, None, None)
    return (1 - alpha) * ce.loss(ctx(None, None)) + alpha * deit.loss(ctx([zd], [zt]))
  f = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))
  value, (g_cls, g_dist) = f(*(jnp.asarray(z, dtype) for z in (z_cls, z_dist, z_t)))
  return value, g_cls, g_dist


def _reference(distillation_type, tau, alpha, z_cls, z_dist, z_t, y):
  c, d = (torch.tensor(z, dtype=torch.float64, requires_grad=True) for z in (z_cls, z_dist))
  teacher = torch.tensor(z_t, dtype=torch.float64)
  loss = ref.DistillationLoss(torch.nn.CrossEntropyLoss(), lambda inputs: teacher,
                              distillation_type, alpha, tau)
  value = loss(None, (c, d), torch.from_numpy(y))
  value.backward()
  return value, c.grad, d.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tau,scale", [(1.0, 1.0), (2.0, 3.0), (4.0, 10.0)])
def test_deit_soft_distillation_matches_authors_code(tau, scale, shape, dtype):
  args = _inputs(shape, scale, dtype)
  with jax.enable_x64(dtype == jnp.float64):
    got = _kd_jax_deit(dict(distillation_type="soft", tau=tau), 0.5, *args, dtype)
  want = _reference("soft", tau, 0.5, *args)
  errs = [rel_err(g, w) for g, w in zip(got, want)]
  assert max(errs) < TOL[dtype], errs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha,scale", [(0.5, 1.0), (0.3, 3.0), (0.9, 10.0)])
def test_deit_hard_distillation_matches_authors_code(alpha, scale, shape, dtype):
  """The defaults (hard, tau 1) at DeiT's alpha 0.5 and two others."""
  args = _inputs(shape, scale, dtype)
  with jax.enable_x64(dtype == jnp.float64):
    got = _kd_jax_deit({}, alpha, *args, dtype)
  want = _reference("hard", 1.0, alpha, *args)
  errs = [rel_err(g, w) for g, w in zip(got, want)]
  assert max(errs) < TOL[dtype], errs


def test_the_hard_target_is_the_teachers_argmax():
  """CE of the distillation head with the teacher's argmax as the label, by hand: logits
  (0, log 3) against a teacher preferring class 1 (and class 0 on a tie: the first)."""
  deit = methods.get("deit")()
  zd = jnp.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
  zt = jnp.array([[-1.0, 2.0], [5.0, 5.0]])
  ctx = Context([zd], [zt], Outputs(zd, {DIST_HEAD: zd}), Outputs(zt, {}), {}, None, None, None)
  # Row 1: -log(3/4); row 2 (tie -> class 0): -log(1/4).
  np.testing.assert_allclose(deit.loss(ctx), (np.log(4 / 3) + np.log(4.0)) / 2, rtol=1e-6)


def test_the_soft_term_is_kd_divided_by_the_number_of_classes():
  """The reference's 'legacy' reduction: summed KL over B * K, not B."""
  rng = np.random.RandomState(0)
  zd, zt = jnp.asarray(rng.randn(5, 7)), jnp.asarray(rng.randn(5, 7))
  ctx = Context([zd], [zt], Outputs(zd, {}), Outputs(zt, {}), {}, None, None, None)
  soft = methods.get("deit")(distillation_type="soft", tau=2.0).loss(ctx)
  kd = methods.get("kd")(temperature=2.0).loss(ctx)
  np.testing.assert_allclose(soft, kd / 7, rtol=1e-6)


def _torch_params(ref_module, params, ds, dt):
  """Copies kd_jax's ViTKD adapter parameters into the reference module (float64)."""
  t = lambda a: torch.tensor(np.asarray(a, np.float64))
  with torch.no_grad():
    if ds != dt:
      for i in range(2):
        ref_module.align2[i].weight.copy_(t(params[f"align2_{i}"]["Dense_0"]["kernel"]).T)
        ref_module.align2[i].bias.copy_(t(params[f"align2_{i}"]["Dense_0"]["bias"]))
      ref_module.align.weight.copy_(t(params["align"]["Dense_0"]["kernel"]).T)
      ref_module.align.bias.copy_(t(params["align"]["Dense_0"]["bias"]))
    ref_module.mask_token.copy_(t(params["mask_token"]))
    for i in (0, 2):
      conv = params[f"generation_{i}"]["Conv_0"]
      ref_module.generation[i].weight.copy_(t(conv["kernel"]).permute(3, 2, 0, 1))
      ref_module.generation[i].bias.copy_(t(conv["bias"]))


def _torch_grads(ref_module, ds, dt):
  """The reference's parameter gradients in kd_jax's layout."""
  g = lambda p: p.grad.numpy()
  out = {"mask_token": g(ref_module.mask_token)}
  for i in (0, 2):
    out[f"generation_{i}"] = {"Conv_0": {
        "kernel": g(ref_module.generation[i].weight).transpose(2, 3, 1, 0),
        "bias": g(ref_module.generation[i].bias)}}
  if ds != dt:
    for name, lin in [("align2_0", ref_module.align2[0]), ("align2_1", ref_module.align2[1]),
                      ("align", ref_module.align)]:
      out[name] = {"Dense_0": {"kernel": g(lin.weight).T, "bias": g(lin.bias)}}
  return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ds,dt,lam,prefix", [(8, 12, 0.5, 1), (12, 12, 0.5, 2),
                                              (8, 12, 0.25, 1)])
def test_vitkd_matches_authors_code(ds, dt, lam, prefix, dtype, monkeypatch):
  """Values and gradients w.r.t. the student's tokens (zero on the prefix tokens it drops)
  and every adapter parameter (randomised, the mask token included); a 4 x 4 grid, B = 3,
  widths apart (aligned by Linear layers) and equal; the reference's noise is one that masks
  the same tokens as kd_jax's draw."""
  b, n, alpha, beta = 3, 16, 3e-3, 2e-3  # Larger weights than the defaults: the same scaling.
  rng = np.random.RandomState(ds + dt + prefix)
  s_tok = [rng.randn(b, prefix + n, ds) for _ in range(3)]
  t_tok = [rng.randn(b, prefix + n, dt) for _ in range(3)]
  if dtype == jnp.float32:
    s_tok, t_tok = ([x.astype(np.float32).astype(np.float64) for x in xs] for xs in (s_tok, t_tok))
  method = methods.get("vitkd")(alpha=alpha, beta=beta, lam=lam)
  adapter, key = method.adapter(), jax.random.PRNGKey(3)
  with jax.enable_x64(dtype == jnp.float64):
    s_maps = [jnp.asarray(x, dtype) for x in s_tok]
    t_maps = [jnp.asarray(x, dtype) for x in t_tok]
    params = adapter.init(jax.random.PRNGKey(0), s_maps, t_maps, False)["params"]
    leaves, tree = jax.tree.flatten(params)
    params = jax.tree.unflatten(tree, [jnp.asarray(rng.randn(*x.shape) * 0.3, dtype)
                                       for x in leaves])

    def total(p, s):
      s_out, t_out = adapter.apply({"params": p}, s, t_maps, True, rngs={"adapter": key})
      return method.loss(Context(s_out, t_out, None, None, {}, None, None, None)), t_out[-1]
    (value, mask), (g_params, g_s) = jax.jit(jax.value_and_grad(total, argnums=(0, 1),
                                                                has_aux=True))(params, s_maps)
  mask = np.asarray(mask, np.float64)
  assert mask.sum() == b * (n - int(n * (1 - lam)))
  noise = torch.tensor(mask + 0.25 * rng.rand(b, n))  # Masks the same tokens.
  monkeypatch.setattr(torch, "rand", lambda *args, **kw: noise)
  ref_module = ref.ViTKDLoss("loss_vitkd", True, ds, dt, alpha, beta, lam).double()
  _torch_params(ref_module, params, ds, dt)
  patches = [torch.tensor(x[:, prefix:], requires_grad=True) for x in s_tok]
  low_s = torch.stack(patches[:2], 1)
  low_t = torch.stack([torch.tensor(x[:, prefix:]) for x in t_tok[:2]], 1)
  want = ref_module([low_s, patches[2]], [low_t, torch.tensor(t_tok[2][:, prefix:])])
  want.backward()
  errs = [rel_err(value, want)]
  for got_s, p in zip(g_s, patches):
    assert not np.any(np.asarray(got_s)[:, :prefix])
    errs.append(rel_err(np.asarray(got_s)[:, prefix:], p.grad))
  want_params = _torch_grads(ref_module, ds, dt)
  for (path, got), w in zip(jax.tree_util.tree_leaves_with_path(g_params),
                            jax.tree.leaves(want_params)):
    errs.append(rel_err(got, w))
  assert jax.tree.structure(g_params) == jax.tree.structure(want_params)
  assert max(errs) < TOL[dtype], errs


def test_vitkd_masks_another_random_half_of_the_tokens_at_each_step():
  """The adapter draws its mask from the step's 'adapter' rng: per example exactly
  N - int(N * (1 - lam)) tokens, different examples and steps different tokens."""
  method = methods.get("vitkd")()
  adapter = method.adapter()
  maps = [jnp.ones((4, 1 + 16, 8))] * 3
  params = adapter.init(jax.random.PRNGKey(0), maps, maps, False)
  masks = [np.asarray(adapter.apply(params, maps, maps, True, rngs={"adapter": k})[1][-1])
           for k in (jax.random.PRNGKey(1), jax.random.PRNGKey(2))]
  for m in masks:
    np.testing.assert_array_equal(m.sum(1), 8)
  assert not np.array_equal(masks[0], masks[1])
  assert not np.array_equal(masks[0][0], masks[0][1])
