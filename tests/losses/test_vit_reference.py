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
import torch.nn.functional as F

from kd_jax import losses, methods
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
    # Shapes only (the values are drawn below): traced, not run operation by operation.
    params = jax.eval_shape(lambda s, t: adapter.init(jax.random.PRNGKey(0), s, t, False),
                            s_maps, t_maps)["params"]
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps,t,scale", [(1.0, 1.0, 1.0), (1.5, 2.0, 3.0), (0.8, 4.0, 10.0)])
def test_ofa_loss_matches_authors_code(eps, t, scale, shape, dtype):
  rng = np.random.RandomState(shape[1])
  b, c = shape
  zs, zt = rng.randn(b, c) * scale, rng.randn(b, c) * scale
  y = rng.randint(0, c, b)
  if dtype == jnp.float32:
    zs, zt = zs.astype(np.float32).astype(np.float64), zt.astype(np.float32).astype(np.float64)
  with jax.enable_x64(dtype == jnp.float64):
    f = jax.jit(jax.value_and_grad(lambda s: losses.ofa(s, jnp.asarray(zt, dtype), jnp.asarray(y),
                                                          eps=eps, temperature=t)))
    got = f(jnp.asarray(zs, dtype))
  s = torch.tensor(zs, requires_grad=True)
  want = ref.ofa_loss(s, torch.tensor(zt), F.one_hot(torch.from_numpy(y), c), eps, t)
  want.backward()
  errs = [rel_err(got[0], want), rel_err(got[1], s.grad)]
  assert max(errs) < TOL[dtype], errs


def test_ofa_loss_is_finite_where_the_reference_takes_the_log_of_zero():
  """A student logit 200 below its row's maximum: float32 softmax underflows to 0 and the
  reference's log(softmax) is -inf (its loss inf); kd_jax's log-softmax gives the limit."""
  zs = np.array([[0.0, -200.0, 0.0]], np.float32)
  zt, y = np.array([[0.0, 1.0, 0.0]], np.float32), np.array([0])
  want = ref.ofa_loss(torch.tensor(zs), torch.tensor(zt), F.one_hot(torch.tensor(y), 3), 1.0)
  assert not torch.isfinite(want)
  got = losses.ofa(jnp.asarray(zs), jnp.asarray(zt), jnp.asarray(y), eps=1.0, temperature=1.0)
  pt = np.exp(zt[0]) / np.exp(zt[0]).sum()
  log_ps = np.array([-np.log(2.0), -200.0 - np.log(2.0), -np.log(2.0)])
  expected = -np.sum(((pt + [1, 0, 0]) - [1, 0, 0]) * log_ps)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def _t(a):
  return torch.tensor(np.asarray(a, np.float64))


def _copy_cnn_projector(seq, p, blocks):
  """kd_jax's CNNProjector parameters into the reference's nn.Sequential."""
  conv = lambda k: _t(k).permute(3, 2, 0, 1)
  with torch.no_grad():
    if blocks:
      for i in range(blocks):
        ops, q = seq[i].op, p[f"sepconv_{i}"]
        for j in (0, 1, 4, 5):
          ops[j].weight.copy_(conv(q[f"op_{j}"]["kernel"]))
        for j in (2, 6):
          ops[j].weight.copy_(_t(q[f"op_{j}"]["scale"]))
          ops[j].bias.copy_(_t(q[f"op_{j}"]["bias"]))
    else:
      seq[0].weight.copy_(conv(p["conv"]["kernel"]))
      seq[0].bias.copy_(_t(p["conv"]["bias"]))
    seq[-1].weight.copy_(_t(p["fc"]["kernel"]).T)
    seq[-1].bias.copy_(_t(p["fc"]["bias"]))


def _copy_vit_projector(seq, p, merges, blocks):
  lin = lambda lin_mod, q: (lin_mod.weight.copy_(_t(q["kernel"]).T),
                            lin_mod.bias.copy_(_t(q["bias"])) if "bias" in q else None)
  norm = lambda mod, q: (mod.weight.copy_(_t(q["scale"])), mod.bias.copy_(_t(q["bias"])))
  with torch.no_grad():
    for i in range(merges):
      m, q = seq[0].fn[i], p[f"merge_{i}"]
      norm(m.norm, q["norm"])
      lin(m.reduction, q["reduction"])
    for i in range(blocks):
      blk, q = seq[1][i], p[f"block_{i}"]
      norm(blk.norm1, q["norm1"])
      norm(blk.norm2, q["norm2"])
      lin(blk.attn.qkv, q["attn"]["qkv"])
      lin(blk.attn.proj, q["attn"]["proj"])
      lin(blk.mlp.fc1, q["mlp"]["fc1"])
      lin(blk.mlp.fc2, q["mlp"]["fc2"])
    lin(seq[3], p["fc"])


def _ofa_case(student_maps, d_s, d_t, stages, eps, t, dtype, to_torch, info, is_cnn):
  """(kd_jax loss and gradients w.r.t. the stage maps, the reference's) for one student."""
  b, k = student_maps[0].shape[0], 10
  rng = np.random.RandomState(7)
  zs, zt, y = rng.randn(b, k), rng.randn(b, k), rng.randint(0, k, b)
  if dtype == jnp.float32:
    zs, zt = zs.astype(np.float32).astype(np.float64), zt.astype(np.float32).astype(np.float64)
  pooled_s, pooled_t = np.zeros((b, d_s)), np.zeros((b, d_t))
  method = methods.get("ofa")(eps=eps, stages=stages, temperature=t)
  adapter = method.adapter()
  with jax.enable_x64(dtype == jnp.float64):
    arr = lambda a: jnp.asarray(a, dtype)
    maps = [arr(m) for m in student_maps]
    # Shapes only (the parameters are drawn below; BatchNorm in training mode reads no
    # statistics): traced, not run operation by operation (4 s a case).
    variables = jax.eval_shape(lambda s, t: adapter.init(jax.random.PRNGKey(0), s, t, False),
                               [*maps, arr(pooled_s), arr(zs)], [arr(pooled_t)])
    leaves, tree = jax.tree.flatten(variables["params"])
    params = jax.tree.unflatten(tree, [arr(rng.randn(*x.shape) * 0.2) for x in leaves])

    def total(maps, s_logits):
      (proj, t_maps), _ = adapter.apply(
          {"params": params, "batch_stats": jax.tree.map(
              lambda x: jnp.zeros(x.shape, x.dtype), variables.get("batch_stats", {}))},
          [*maps, arr(pooled_s), s_logits], [arr(pooled_t)], True, mutable=["batch_stats"])
      ctx = Context(proj, t_maps, Outputs(s_logits, {}), Outputs(arr(zt), {}),
                    {"label": jnp.asarray(y)}, None, None, None)
      return method.loss(ctx)
    value, (g_maps, g_logits) = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(maps, arr(zs))
  chosen = stages or tuple(range(1, len(student_maps) + 1))
  eps_all = eps * (len(chosen) + 1) if len(eps) == 1 else eps
  reference = ref.OFAProjectors(info, is_cnn, d_s, d_t, list(chosen), k, 0 if is_cnn else 1).double()
  n = len(student_maps)
  for stage in chosen:
    seq, p = reference.projector[str(stage)], params[f"stage{stage}"]
    # The same projector: as many parameters (BatchNorm statistics aside) as the reference's.
    assert sum(x.size for x in jax.tree.leaves(p)) == sum(w.numel() for w in seq.parameters())
    if is_cnn:
      _copy_cnn_projector(seq, p, n - stage)
    else:
      grid = int(round((student_maps[0].shape[1] - 1) ** 0.5))
      merges = max(int(np.log2(grid / 7)), 0)
      _copy_vit_projector(seq, p, merges, max(n - stage, 1))
  feats = [torch.tensor(to_torch(m), requires_grad=True) for m in student_maps]
  s_logits = torch.tensor(zs, requires_grad=True)
  want = reference(feats, s_logits, torch.tensor(zt), torch.from_numpy(y), list(eps_all), t)
  want.backward()
  errs = [rel_err(value, want), rel_err(g_logits, s_logits.grad)]
  errs += [rel_err(to_torch(np.asarray(g)), f.grad) for g, f in zip(g_maps, feats)
           if f.grad is not None]
  assert all(not np.any(np.asarray(g)) for g, f in zip(g_maps, feats) if f.grad is None)
  return errs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stages,eps,t", [((), (1.0,), 1.0), ((1, 3), (1.5, 1.2, 1.0), 2.0)])
def test_ofa_on_a_cnn_student_matches_authors_code(stages, eps, t, dtype):
  """A 4-stage CNN student (16x16 -> 2x2 maps, 16 -> 128 channels, as a ResNet-18's at 2/7 of
  its size and 1/4 of its width; every BatchNorm sees at least 16 values per channel, so that
  float32 round-off is not amplified by a variance of a handful of values) and a teacher of pooled width 96: the SepConv chains (stage k:
  4 - k of them), the 1x1 convolution of stage 4, every projector's and the logits' terms;
  value and gradients w.r.t. every stage map and the student's logits (BatchNorm in training
  mode, as the reference trains)."""
  rng = np.random.RandomState(0)
  shapes = [(4, 16, 16, 16), (4, 8, 8, 32), (4, 4, 4, 64), (4, 2, 2, 128)]
  maps = [rng.randn(*s) for s in shapes]
  if dtype == jnp.float32:
    maps = [m.astype(np.float32).astype(np.float64) for m in maps]
  info = lambda stage: (stage - 1, tuple(np.array(shapes[stage - 1])[[3, 1, 2]]))
  errs = _ofa_case(maps, 128, 96, stages, eps, t, dtype, lambda m: m.transpose(0, 3, 1, 2),
                   info, True)
  assert max(errs) < TOL[dtype], errs


@pytest.mark.parametrize("dtype", DTYPES)
def test_ofa_on_a_vit_student_matches_authors_code(dtype):
  """A 4-stage ViT student's tokens (a class token and a 14x14 grid, width 16): each stage's
  patches merged once to 7x7 (GELU), 3, 2, 1 and 1 blocks of 4 heads, the class token."""
  rng = np.random.RandomState(1)
  maps = [rng.randn(2, 1 + 196, 16) for _ in range(4)]
  if dtype == jnp.float32:
    maps = [m.astype(np.float32).astype(np.float64) for m in maps]
  info = lambda stage: (stage - 1, (197, 16))
  errs = _ofa_case(maps, 16, 24, (), (1.0,), 1.0, dtype, lambda m: m, info, False)
  assert max(errs) < TOL[dtype], errs
