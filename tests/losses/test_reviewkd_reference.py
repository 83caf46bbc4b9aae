"""ReviewKD equals mdistiller's ``ReviewKD.py`` (``torch_reference_baselines``): the hierarchical
context loss on its own (every pooling level, overlapping windows), and the whole review (the
ABF chain in training mode, then HCL, weight and warm-up) in value and in gradient w.r.t. the
student's maps, its pooled feature and every ABF parameter, with the reference's weights
copied into kd_jax's adapter. Float32 within 1e-5 relative of the float64 reference (1e-4
for the gradients w.r.t. the pooled feature and the ABF parameters: batch normalisation
over one 1 x 1 map per example makes them a near-cancelling sum), float64 within 1e-10."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from kd_jax import losses, methods
from kd_jax.methods import Context, Outputs
from kd_jax.methods.reviewkd import ReviewAdapter, nearest_resize
from tests.losses import torch_reference_baselines as ref

DTYPES = [jnp.float32, jnp.float64]
TOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}


def rel_err(got, want):
  want = np.asarray(want.detach().numpy() if isinstance(want, torch.Tensor) else want,
                    np.float64).reshape(-1)
  got = np.asarray(got, np.float64).reshape(-1)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def nchw(x):
  return torch.tensor(np.transpose(np.asarray(x, np.float64), (0, 3, 1, 2)), requires_grad=True)


def nhwc(t):
  return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [1, 2, 5, 7, 8, 14])
def test_hcl_matches_authors_code(hw, dtype):
  """Levels 4, 2, 1 where below the map's height (5, 7 and 14 pool in overlapping windows)."""
  rng = np.random.RandomState(hw)
  fs, ft = rng.randn(3, hw, hw, 5) * 2.0, rng.randn(3, hw, hw, 5)
  if dtype == jnp.float32:
    fs, ft = fs.astype(np.float32).astype(np.float64), ft.astype(np.float32).astype(np.float64)
  with jax.enable_x64(dtype == jnp.float64):
    value, grad = jax.value_and_grad(losses.hcl)(jnp.asarray(fs, dtype), jnp.asarray(ft, dtype))
  s, t = nchw(fs), nchw(ft).detach()
  want = ref.hcl_loss([s], [t])
  want.backward()
  assert rel_err(value, want) < TOL[dtype]
  assert rel_err(grad, nhwc(s.grad)) < TOL[dtype]


def test_hcl_weights_the_levels_by_powers_of_two():
  """A map of height 8 whose only difference is a constant c: every level's MSE is c^2, so
  the loss is c^2 * (1 + 1/2 + 1/4 + 1/8) / (1 + 1/2 + 1/4 + 1/8) = c^2; a difference with
  zero mean in every 4x4 window vanishes from the pooled levels: its MSE / 1.875."""
  ft = jnp.zeros((1, 8, 8, 1))
  assert float(losses.hcl(ft + 3.0, ft)) == pytest.approx(9.0, rel=1e-6)
  checker = jnp.asarray(np.indices((8, 8)).sum(0) % 2 * 2.0 - 1.0)[None, :, :, None]
  assert float(losses.hcl(checker, ft)) == pytest.approx(1.0 / 1.875, rel=1e-6)


@pytest.mark.parametrize("size,out", [(1, 8), (4, 8), (7, 14), (8, 4), (5, 3), (3, 7)])
def test_nearest_resize_matches_torch_interpolate(size, out):
  x = np.random.RandomState(size * out).randn(2, size, size, 3).astype(np.float32)
  want = torch.nn.functional.interpolate(torch.tensor(x).permute(0, 3, 1, 2), (out, out),
                                         mode="nearest").permute(0, 2, 3, 1).numpy()
  np.testing.assert_array_equal(np.asarray(nearest_resize(jnp.asarray(x), (out, out))), want)


@pytest.mark.parametrize("hw,out", [((4, 2), (8, 6)), ((7, 5), (14, 4)), ((1, 1), (3, 3))])
def test_nearest_resize_gradient_matches_torch_interpolate(hw, out):
  """The gradient sums each output's cotangent into the input pixel it copies, as PyTorch's
  backward of ``interpolate(mode="nearest")``: integer factors and not, height and width
  apart."""
  rs = np.random.RandomState(sum(hw) + sum(out))
  x, g = rs.randn(2, *hw, 3).astype(np.float32), rs.randn(2, *out, 3).astype(np.float32)
  xt = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
  torch.nn.functional.interpolate(xt, out, mode="nearest").backward(
      torch.tensor(g).permute(0, 3, 1, 2))
  _, vjp = jax.vjp(lambda v: nearest_resize(v, out), jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]),
                             xt.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)


# (student heights, student channels, teacher heights, teacher channels), shallowest first,
# the pooled level last (height 1). "cifar": mdistiller's resnet8x4 layout, scaled down;
# "imagenet": heights 14 and 7 (HCL's overlapping windows); "resize": teacher maps half the
# student's size (the ABF's output resize); "mid_capped": the middle width capped below the
# pooled feature's (the reference's 512 cap, at max_mid_channels 6).
CASES = {
    "cifar": ([8, 4, 2], [4, 6, 8], [8, 4, 2], [5, 7, 9], 512),
    "imagenet": ([14, 7], [4, 6], [14, 7], [3, 5], 512),
    "resize": ([8, 4], [4, 6], [4, 2], [5, 7], 512),
    "mid_capped": ([8, 4], [4, 8], [8, 4], [5, 7], 6),
}


def _torch_review(case, seed):
  s_hw, s_c, t_hw, t_c, max_mid = CASES[case]
  torch.manual_seed(seed)
  module = ref.ReviewKD(shapes=[1] + s_hw[::-1], out_shapes=[1] + t_hw[::-1],
                        in_channels=s_c + [s_c[-1]], out_channels=t_c + [t_c[-1]],
                        weight=5.0, warmup=20).double()
  if max_mid != 512:  # The reference hard-codes 512; rebuild its ABFs with the cap.
    mid = min(max_mid, s_c[-1])
    abfs = [ref.ABF(c, mid, o, i < len(s_c)) for i, (c, o) in
            enumerate(zip(s_c + [s_c[-1]], t_c + [t_c[-1]]))]
    module.abfs = torch.nn.ModuleList(abfs[::-1]).double()
  with torch.no_grad():  # BatchNorm affine parameters away from (1, 0).
    for name, p in module.named_parameters():
      if ".1." in name:
        p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else torch.randn_like(p))
  return module.train()


def _flax_params(module, levels):
  """mdistiller's ``abfs.<j>`` (deepest first) as kd_jax's ``abf<levels - 1 - j>``."""
  def conv(w):  # numpy: a jax array made outside enable_x64 would be float32.
    return w.detach().numpy().transpose(2, 3, 1, 0)

  def vec(v):
    return v.detach().numpy()

  params = {}
  for j, abf in enumerate(module.abfs):
    p = {"conv1": {"kernel": conv(abf.conv1[0].weight)},
         "bn1": {"scale": vec(abf.conv1[1].weight), "bias": vec(abf.conv1[1].bias)},
         "conv2": {"kernel": conv(abf.conv2[0].weight)},
         "bn2": {"scale": vec(abf.conv2[1].weight), "bias": vec(abf.conv2[1].bias)}}
    if abf.att_conv is not None:
      p["att_conv"] = {"Conv_0": {"kernel": conv(abf.att_conv[0].weight),
                                  "bias": vec(abf.att_conv[0].bias)}}
    params[f"abf{levels - 1 - j}"] = p
  return params


def _torch_param_grads(module, levels):
  """The reference's parameter gradients in kd_jax's layout, flattened in tree order."""
  def conv(w):
    return w.grad.numpy().transpose(2, 3, 1, 0)

  tree = {}
  for j, abf in enumerate(module.abfs):
    p = {"conv1": {"kernel": conv(abf.conv1[0].weight)},
         "bn1": {"scale": abf.conv1[1].weight.grad.numpy(), "bias": abf.conv1[1].bias.grad.numpy()},
         "conv2": {"kernel": conv(abf.conv2[0].weight)},
         "bn2": {"scale": abf.conv2[1].weight.grad.numpy(), "bias": abf.conv2[1].bias.grad.numpy()}}
    if abf.att_conv is not None:
      p["att_conv"] = {"Conv_0": {"kernel": conv(abf.att_conv[0].weight),
                                  "bias": abf.att_conv[0].bias.grad.numpy()}}
    tree[f"abf{levels - 1 - j}"] = p
  return jax.tree_util.tree_leaves(tree)


@functools.lru_cache(maxsize=None)
def _kd_jax_fn(max_mid, dtype):
  adapter = ReviewAdapter(max_mid, dtype=dtype)
  method = methods.get("reviewkd")(max_mid_channels=max_mid)  # warmup 20: the default.

  def loss(params, s_maps, t_maps, epoch):
    (fused, targets), _ = adapter.apply({"params": params, "batch_stats": stats(s_maps, t_maps)},
                                        s_maps, t_maps, train=True, mutable=["batch_stats"])
    ctx = Context(fused, targets, Outputs(None, {}), Outputs(None, {}), {}, epoch, None, None)
    return 5.0 * method.loss(ctx)

  def stats(s_maps, t_maps):
    return adapter.init(jax.random.PRNGKey(0), s_maps, t_maps, train=False)["batch_stats"]

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epoch", [3, 25])
@pytest.mark.parametrize("case", sorted(CASES))
def test_review_matches_authors_code(case, epoch, dtype):
  s_hw, s_c, t_hw, t_c, max_mid = CASES[case]
  levels, b = len(s_hw) + 1, 5
  rng = np.random.RandomState(len(case) + epoch)
  s_maps = [rng.randn(b, h, h, c) for h, c in zip(s_hw, s_c)] + [rng.randn(b, s_c[-1])]
  t_maps = [rng.randn(b, h, h, c) for h, c in zip(t_hw, t_c)] + [rng.randn(b, t_c[-1])]
  module = _torch_review(case, seed=epoch)
  if dtype == jnp.float32:  # The reference sees the float32 inputs and weights, in float64.
    s_maps, t_maps = ([m.astype(np.float32).astype(np.float64) for m in ms]
                      for ms in (s_maps, t_maps))
    with torch.no_grad():
      for p in module.parameters():
        p.copy_(p.float().double())
  params = _flax_params(module, levels)

  with jax.enable_x64(dtype == jnp.float64):
    cast = lambda xs: [jnp.asarray(x, dtype) for x in xs]
    fn = _kd_jax_fn(max_mid, dtype)
    value, (g_params, g_maps) = fn(jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params),
                                   cast(s_maps), cast(t_maps), jnp.asarray(epoch, dtype))

  s_torch = [nchw(m) for m in s_maps[:-1]]
  pooled = torch.tensor(s_maps[-1], requires_grad=True)
  t_torch = [None] + [nchw(m).detach() for m in t_maps[:-1]]  # The stem, left out.
  want = module([None] + s_torch, pooled, t_torch, torch.tensor(t_maps[-1]), epoch)
  want.backward()
  tol = TOL[dtype]
  assert rel_err(value, want) < tol
  for got, s in zip(g_maps[:-1], s_torch):
    assert rel_err(got, nhwc(s.grad)) < tol
  chain_tol = 1e-4 if dtype == jnp.float32 else tol
  assert rel_err(g_maps[-1], pooled.grad) < chain_tol
  errs = [rel_err(g, w) for g, w in zip(jax.tree_util.tree_leaves(g_params),
                                         _torch_param_grads(module, levels))]
  assert max(errs) < chain_tol, errs
