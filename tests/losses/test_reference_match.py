"""Every objective equals its reference implementation (``torch_reference``: PyTorch, NCHW,
float64) to 1e-5 relative, in float32 on random inputs of realistic shapes; where a method
exists it is called with its own defaults (``method``), so they are checked to be the
reference's too. Shapes: the
resnet32x4 -> resnet8x4 features of RepDistiller's CIFAR-100 benchmark (stage1..3
[B, 32/16/8, 32/16/8, 64/128/256], pooled [B, 256], 100 logits), and a pair whose maps
differ in size and channels (pooling and connectors)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from kd_jax import losses, methods
from kd_jax.methods import Context
from kd_jax.methods.fitnet import ConvReg
from kd_jax.methods.vid import VIDRegressor
from tests.losses import torch_reference as ref

RTOL = 1e-5
B = 16


def run(fn, *arrays, **hparams):
  """``fn(*arrays, **hparams)`` under ``jit`` (one compilation instead of op-by-op dispatch)."""
  return jax.jit(functools.partial(fn, **hparams))(*arrays)


def method(name, s_maps, t_maps, **hparams):
  """The registered method's loss with its defaults (and ``hparams``) on the given maps."""
  m = methods.get(name)(**hparams)
  return jax.jit(lambda s, t: m.loss(Context(s, t, None, None, {}, None, None, None)))(
      list(s_maps), list(t_maps))


def nchw(x):
  """NHWC float32 numpy -> NCHW float64 torch (the same values)."""
  x = torch.from_numpy(np.asarray(x, np.float64))
  return x.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else x


def rel_err(got, want):
  want = np.asarray(want.detach().numpy() if isinstance(want, torch.Tensor) else want,
                    np.float64).reshape(-1)
  got = np.asarray(got, np.float64).reshape(-1)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def maps(seed, shapes, relu=True):
  rng = np.random.RandomState(seed)
  out = [rng.randn(B, *s).astype(np.float32) for s in shapes]
  return [np.maximum(x, 0) for x in out] if relu else out


S_MAPS = [(32, 32, 64), (16, 16, 128), (8, 8, 256)]   # resnet8x4 stage1..3
T_MAPS = [(32, 32, 64), (16, 16, 128), (8, 8, 256)]   # resnet32x4 stage1..3
# A pair that needs pooling and differs in channels (e.g. a 16x16 student vs 32x32 teacher).
S_ODD = [(16, 16, 32), (8, 8, 64), (4, 4, 128)]
T_ODD = [(32, 32, 64), (16, 16, 96), (8, 8, 160)]


@pytest.fixture(scope="module")
def logits():
  rng = np.random.RandomState(0)
  return (rng.randn(64, 100).astype(np.float32) * 3, rng.randn(64, 100).astype(np.float32) * 3,
          rng.randint(0, 100, 64))


def test_kd_matches_reference(logits):
  zs, zt, _ = logits
  got = jax.jit(lambda s, t: methods.get("kd")().loss(
      Context(None, None, methods.Outputs(s, {}), methods.Outputs(t, {}), {}, None, None, None)))(zs, zt)
  assert rel_err(got, ref.kd(nchw(zs), nchw(zt), 4.0)) < RTOL


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_pytorch(logits, smoothing):
  zs, _, y = logits
  got = run(losses.cross_entropy, zs, y, label_smoothing=smoothing)
  want = torch.nn.functional.cross_entropy(nchw(zs), torch.from_numpy(y), label_smoothing=smoothing)
  assert rel_err(got, want) < RTOL


@pytest.mark.parametrize("alpha,beta,t", [(1.0, 8.0, 4.0), (1.0, 2.0, 1.0), (0.5, 6.0, 2.0)])
def test_dkd_matches_reference(logits, alpha, beta, t):
  zs, zt, y = logits
  got = run(losses.dkd, zs, zt, y, alpha=alpha, beta=beta, temperature=t, warmup=20.0)
  want = ref.dkd(nchw(zs), nchw(zt), torch.from_numpy(y), alpha, beta, t)
  assert rel_err(got, want) < RTOL


def test_fitnet_matches_reference():
  fs, ft = maps(1, [(16, 16, 128), (16, 16, 128)], relu=False)
  assert rel_err(run(losses.fitnet, fs, ft), ref.hint(nchw(fs), nchw(ft))) < RTOL


@pytest.mark.parametrize("s_shapes,t_shapes", [(S_MAPS, T_MAPS), (S_ODD, T_ODD)])
def test_at_matches_reference(s_shapes, t_shapes):
  fs, ft = maps(2, s_shapes), maps(3, t_shapes)
  want = sum(ref.at(nchw(s), nchw(t)) for s, t in zip(fs, ft))
  assert rel_err(method("at", fs, ft), want) < RTOL


@pytest.mark.parametrize("s_shape,t_shape", [((8, 8, 256), (8, 8, 256)), ((4, 4, 128), (8, 8, 160))])
def test_sp_matches_reference(s_shape, t_shape):
  fs, ft = maps(4, [s_shape]) + maps(5, [t_shape])
  assert rel_err(run(losses.similarity_preserving, fs, ft), ref.sp(nchw(fs), nchw(ft))) < RTOL


def test_cc_matches_reference():
  rng = np.random.RandomState(6)
  es, et = rng.randn(64, 128).astype(np.float32), rng.randn(64, 128).astype(np.float32)
  assert rel_err(run(losses.correlation_congruence, es, et), ref.cc(nchw(es), nchw(et))) < RTOL


@pytest.mark.parametrize("dims", [(256, 256), (64, 128)])
def test_rkd_matches_reference(dims):
  rng = np.random.RandomState(7)
  fs = np.maximum(rng.randn(64, dims[0]), 0).astype(np.float32)
  ft = np.maximum(rng.randn(64, dims[1]), 0).astype(np.float32)
  assert rel_err(method("rkd", [fs], [ft]), ref.rkd(nchw(fs), nchw(ft))) < RTOL


@pytest.mark.parametrize("seed", [0, 1, 8])
def test_pkt_matches_reference(seed):
  """Near-uniform similarity rows (the loss ~1e-5 from terms ~1e-3): cancellation-free."""
  rng = np.random.RandomState(seed)
  fs = np.maximum(rng.randn(64, 256), 0).astype(np.float32)
  ft = np.maximum(rng.randn(64, 256), 0).astype(np.float32)
  assert rel_err(method("pkt", [fs], [ft]), ref.pkt(nchw(fs), nchw(ft))) < RTOL


def test_ab_matches_reference():
  fs, ft = maps(9, S_MAPS, relu=False), maps(10, T_MAPS, relu=False)
  want = ref.ab([nchw(s) for s in fs], [nchw(t) for t in ft])
  assert rel_err(method("ab", fs, ft), want) < RTOL


@pytest.mark.parametrize("s_shape,t_shape", [((8, 8, 128), (8, 8, 128)), ((16, 16, 64), (8, 8, 64))])
def test_ft_matches_reference(s_shape, t_shape):
  # Factors come out of LeakyReLU layers: negative values included.
  fs, ft = maps(11, [s_shape], relu=False) + maps(12, [t_shape], relu=False)
  assert rel_err(method("ft", [fs], [ft]), ref.ft(nchw(fs), nchw(ft))) < RTOL


def test_fsp_matches_reference():
  shapes = [(32, 32, 32)] + T_MAPS  # stem, stage1..3 (equal channels in S and T)
  fs, ft = maps(13, shapes), maps(14, shapes)
  want = ref.fsp([nchw(f) for f in fs], [nchw(f) for f in ft])
  assert rel_err(method("fsp", fs, ft), want) < RTOL


@pytest.mark.parametrize("s_shapes,t_shapes", [(S_MAPS, T_MAPS), (S_ODD, T_ODD)])
def test_nst_matches_reference(s_shapes, t_shapes):
  fs, ft = maps(15, s_shapes), maps(16, t_shapes)
  want = sum(ref.nst(nchw(s), nchw(t)) for s, t in zip(fs, ft))
  assert rel_err(method("nst", fs, ft), want) < RTOL


@pytest.mark.parametrize("s_shape,t_shape", [((8, 8, 128), (8, 8, 256)), ((16, 16, 64), (8, 8, 96))])
def test_vid_matches_reference(s_shape, t_shape):
  fs, ft = maps(17, [s_shape]) + maps(18, [t_shape])
  vid = methods.get("vid")()  # The method's defaults: init_pred_var 5, eps 1e-5.
  module = VIDRegressor(t_shape[-1], vid.init_pred_var, vid.eps)
  fs_m, ft_m = losses.vid_match(jnp.asarray(fs), jnp.asarray(ft))
  p = dict(jax.jit(module.init)(jax.random.PRNGKey(0), fs_m)["params"])
  p["log_scale"] = p["log_scale"] + jnp.linspace(-1.0, 1.0, t_shape[-1])  # non-trivial variance
  mean, var = jax.jit(module.apply)({"params": p}, fs_m)
  got = run(losses.vid, mean, var, ft_m)
  convs = [torch.from_numpy(np.asarray(p[f"TorchConv_{i}"]["Conv_0"]["kernel"], np.float64))
           .permute(3, 2, 0, 1) for i in range(3)]
  regressor = lambda x: torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(
      torch.relu(torch.nn.functional.conv2d(x, convs[0])), convs[1])), convs[2])
  want = ref.vid(nchw(fs), nchw(ft), regressor,
                 torch.from_numpy(np.asarray(p["log_scale"], np.float64)))
  assert rel_err(got, want) < RTOL


def crd_case(seed, nce_t, nce_m, n=500, d=128, k=64, steps=3):
  """``(method, memory, reference, batches)``: CRD at its defaults or at ``nce_t``/``nce_m``,
  its memory of ``n`` examples and the reference's copy, and ``steps`` batches ``(z_s, z_t,
  index, contrast_index)`` of unit embeddings, unique indices and ``k`` negatives."""
  rng = np.random.RandomState(seed)
  memory = losses.crd_memory_init(jax.random.PRNGKey(0), n, d)
  crd = methods.get("crd")(**{k: v for k, v in (("nce_t", nce_t), ("nce_m", nce_m)) if v})
  reference = ref.CRD(nchw(memory.student), nchw(memory.teacher), T=crd.nce_t,
                      momentum=crd.nce_m)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  batches = []
  for _ in range(steps):
    zs = unit(rng.randn(B, d)).astype(np.float32)
    zt = unit(rng.randn(B, d)).astype(np.float32)
    index = rng.choice(n, B, replace=False)
    batches.append((zs, zt, index,
                    np.concatenate([index[:, None], rng.randint(0, n, (B, k))], axis=1)))
  return crd, memory, reference, batches


@pytest.mark.parametrize("nce_t, nce_m", [(None, None), (0.1, 0.8)])
def test_crd_matches_reference_over_three_steps(nce_t, nce_m):
  """Loss, both memories and both normalisers after 3 steps (memory updated in between), at
  the method's defaults (tau 0.07, momentum 0.5) and at values where a swapped momentum or a
  fixed temperature would show."""
  crd, memory, reference, batches = crd_case(19, nce_t, nce_m)
  step = jax.jit(functools.partial(losses.crd, temperature=crd.nce_t, momentum=crd.nce_m))
  for zs, zt, index, contrast in batches:
    got, memory = step(zs, zt, memory, jnp.asarray(index), jnp.asarray(contrast))
    want = reference(nchw(zs), nchw(zt), torch.from_numpy(index), torch.from_numpy(contrast))
    assert rel_err(got, want) < RTOL
  assert rel_err(memory.student, reference.memory_v1) < RTOL
  assert rel_err(memory.teacher, reference.memory_v2) < RTOL
  assert rel_err(memory.z_student, reference.z_v1) < RTOL
  assert rel_err(memory.z_teacher, reference.z_v2) < RTOL


def test_mean_matching_matches_srrl_reference():
  fs, ft = maps(20, [(7, 7, 512), (7, 7, 512)])
  assert rel_err(run(losses.mean_matching, fs, ft), ref.statm(nchw(fs), nchw(ft))) < RTOL


@pytest.mark.parametrize("kind,s_hw,t_hw", [("down2", 16, 8), ("up2", 8, 16), ("valid", 10, 8),
                                            ("valid", 8, 8)])
def test_conv_reg_matches_reference(kind, s_hw, t_hw):
  """FitNet's regressor with PyTorch's layout: weights converted by a plain transpose."""
  x = maps(21, [(s_hw, s_hw, 32)], relu=False)[0]
  module = ConvReg(48, (t_hw, t_hw))
  variables = jax.jit(module.init)(jax.random.PRNGKey(1), x)
  y, _ = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  assert y.shape == (B, t_hw, t_hw, 48)
  p = variables["params"]
  conv = p[[k for k in p if k.startswith("TorchConv")][0]]
  if kind == "up2":
    w = torch.from_numpy(np.asarray(conv["kernel"], np.float64)).permute(2, 3, 0, 1)
    b = conv["bias"]
  else:
    w = torch.from_numpy(np.asarray(conv["Conv_0"]["kernel"], np.float64)).permute(3, 2, 0, 1)
    b = conv["Conv_0"]["bias"]
  bn = p["BatchNorm_0"]
  want = ref.conv_reg_forward(nchw(x), w, torch.from_numpy(np.asarray(b, np.float64)),
                              torch.from_numpy(np.asarray(bn["scale"], np.float64)),
                              torch.from_numpy(np.asarray(bn["bias"], np.float64)), kind)
  assert rel_err(np.transpose(np.asarray(y), (0, 3, 1, 2)), want) < RTOL
