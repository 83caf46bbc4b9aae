"""RepDistiller's objectives (and KD, DKD) equal their reference implementations
(``torch_reference``, float64 autograd) in gradient, w.r.t. the student's inputs (and, for
VID, its regressor's parameters; for CRD, both embeddings over three steps of its memory), in
float32 within 1e-5 relative (of the largest element), as test_reference_match.py checks
their values; also where a student's and a teacher's value tie exactly (a dead position, a
zero row), where PyTorch's ``abs`` has gradient 0 and ``jnp.abs``'s is 1
(``losses.absolute``)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from kd_jax import losses, methods
from kd_jax.methods import Context
from kd_jax.methods.vid import VIDRegressor
from tests.losses import torch_reference as ref
from tests.losses.test_reference_match import crd_case, maps, nchw, rel_err

RTOL = 1e-5
S_MAPS = [(16, 16, 16), (8, 8, 32), (4, 4, 64)]
T_MAPS = [(16, 16, 32), (8, 8, 48), (4, 4, 64)]


def method(name):
  m = methods.get(name)()
  return lambda s, t: m.loss(Context(list(s), list(t), None, None, {}, None, None, None))


def each(torch_fn):
  """A per-layer reference summed over the layers, as the method sums them."""
  return lambda s, t: sum(torch_fn(a, b) for a, b in zip(s, t))


def logits(seed):
  rng = np.random.RandomState(seed)
  return [(rng.randn(15, 100) * 3).astype(np.float32)]


LABELS = np.random.RandomState(0).randint(0, 100, 15)

# name: (kd_jax loss of the student's and the teacher's arrays, the reference's, arrays).
CASES = {
    "kd": (lambda s, t: losses.kd(s[0], t[0], temperature=4.0),
           lambda s, t: ref.kd(s[0], t[0], 4.0), lambda: (logits(1), logits(2))),
    "dkd": (lambda s, t: losses.dkd(s[0], t[0], LABELS, alpha=1.0, beta=8.0, temperature=4.0,
                                    warmup=20.0),
            lambda s, t: ref.dkd(s[0], t[0], torch.from_numpy(LABELS), 1.0, 8.0, 4.0),
            lambda: (logits(3), logits(4))),
    "fitnet": (lambda s, t: losses.fitnet(s[0], t[0]), lambda s, t: ref.hint(s[0], t[0]),
               lambda: (maps(5, [(8, 8, 32)], relu=False), maps(6, [(8, 8, 32)], relu=False))),
    "at": (method("at"), each(ref.at), lambda: (maps(7, S_MAPS), maps(8, T_MAPS))),
    "sp": (lambda s, t: losses.similarity_preserving(s[0], t[0]), lambda s, t: ref.sp(s[0], t[0]),
           lambda: (maps(9, [(4, 4, 64)]), maps(10, [(8, 8, 96)]))),
    "cc": (lambda s, t: losses.correlation_congruence(s[0], t[0]),
           lambda s, t: ref.cc(s[0], t[0]),
           lambda: (maps(11, [(64,)], relu=False), maps(12, [(64,)], relu=False))),
    "rkd": (method("rkd"), lambda s, t: ref.rkd(s[0], t[0]),
            lambda: (maps(13, [(64,)]), maps(14, [(96,)]))),
    "pkt": (method("pkt"), lambda s, t: ref.pkt(s[0], t[0]),
            lambda: (maps(15, [(64,)]), maps(16, [(64,)]))),
    "ab": (method("ab"), ref.ab, lambda: (maps(17, S_MAPS, relu=False),
                                           maps(18, S_MAPS, relu=False))),
    "ft": (method("ft"), lambda s, t: ref.ft(s[0], t[0]),
           lambda: (maps(19, [(8, 8, 32)], relu=False), maps(20, [(8, 8, 32)], relu=False))),
    "fsp": (method("fsp"), ref.fsp, lambda: (maps(21, [(16, 16, 8)] + S_MAPS),
                                             maps(22, [(16, 16, 8)] + S_MAPS))),
    "nst": (method("nst"), each(ref.nst), lambda: (maps(23, S_MAPS), maps(24, T_MAPS))),
}


def tie(s, t):
  """Where the student's and the teacher's value tie: example 0 is all zeros on both sides
  (a dead example), and position (0, 0) of every map of example 1 (a dead position)."""
  s, t = [a.copy() for a in s], [a.copy() for a in t]
  for a in s + t:
    a[0] = 0
    if a.ndim == 4:
      a[1, 0, 0] = 0
  return s, t


def gradients(name, arrays):
  ours, theirs, _ = CASES[name]
  s, t = arrays
  got = jax.jit(jax.grad(ours))([np.asarray(a) for a in s], [np.asarray(a) for a in t])
  ts = [nchw(a).requires_grad_(True) for a in s]
  theirs(ts, [nchw(a) for a in t]).backward()
  want = [x.grad.permute(0, 2, 3, 1) if x.grad.ndim == 4 else x.grad for x in ts]
  return got, want


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_reference(name):
  got, want = gradients(name, CASES[name][2]())
  assert max(rel_err(g, w) for g, w in zip(got, want)) < RTOL


@pytest.mark.parametrize("name", ["cc", "ft", "at", "nst", "sp", "fitnet", "ab"])
def test_gradient_where_student_and_teacher_tie_matches_reference(name):
  got, want = gradients(name, tie(*CASES[name][2]()))
  assert all(np.isfinite(np.asarray(g)).all() for g in got)
  assert max(rel_err(g, w) for g, w in zip(got, want)) < RTOL


@pytest.mark.parametrize("s_shape,t_shape", [((8, 8, 32), (8, 8, 48)), ((16, 16, 16), (8, 8, 24))])
def test_vid_gradient_matches_reference(s_shape, t_shape):
  """W.r.t. the student's map (pooled to the teacher's size where larger), the regressor's
  three kernels and its per-channel ``log_scale``; the teacher's map gets none."""
  fs, ft = maps(25, [s_shape]) + maps(26, [t_shape])
  vid = methods.get("vid")()
  module = VIDRegressor(t_shape[-1], vid.init_pred_var, vid.eps)
  p = dict(jax.jit(module.init)(jax.random.PRNGKey(0), losses.vid_match(fs, ft)[0])["params"])
  p["log_scale"] = p["log_scale"] + jnp.linspace(-1.0, 1.0, t_shape[-1])  # non-trivial variance

  def ours(p, f_s, f_t):
    f_s, f_t = losses.vid_match(f_s, f_t)
    return losses.vid(*module.apply({"params": p}, f_s), f_t)
  got_p, got_s, got_t = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(p, fs, ft)

  kernels = [torch.from_numpy(np.asarray(p[f"TorchConv_{i}"]["Conv_0"]["kernel"], np.float64))
             .permute(3, 2, 0, 1).contiguous().requires_grad_(True) for i in range(3)]
  log_scale = torch.from_numpy(np.asarray(p["log_scale"], np.float64)).requires_grad_(True)
  f_s = nchw(fs).requires_grad_(True)
  conv = torch.nn.functional.conv2d
  regressor = lambda x: conv(torch.relu(conv(torch.relu(conv(x, kernels[0])), kernels[1])),
                             kernels[2])
  ref.vid(f_s, nchw(ft), regressor, log_scale).backward()
  assert rel_err(got_s, f_s.grad.permute(0, 2, 3, 1)) < RTOL
  assert rel_err(got_p["log_scale"], log_scale.grad) < RTOL
  for i, k in enumerate(kernels):
    assert rel_err(got_p[f"TorchConv_{i}"]["Conv_0"]["kernel"], k.grad.permute(2, 3, 1, 0)) < RTOL
  assert not np.asarray(got_t).any()  # (The reference's teacher map is a detached feature.)


@pytest.mark.parametrize("nce_t, nce_m", [(None, None), (0.1, 0.8)])
def test_crd_gradient_matches_reference_over_three_steps(nce_t, nce_m):
  """W.r.t. the student's and the teacher's embeddings, at each of three steps (the memory
  and its normalisers updated in between; the first step's normalisers, estimated from its
  own scores, pass no gradient: the reference takes them with ``.item()``)."""
  crd, memory, reference, batches = crd_case(27, nce_t, nce_m)
  step = jax.jit(jax.grad(functools.partial(losses.crd, temperature=crd.nce_t,
                                            momentum=crd.nce_m), argnums=(0, 1), has_aux=True))
  for zs, zt, index, contrast in batches:
    (got_s, got_t), memory = step(zs, zt, memory, jnp.asarray(index), jnp.asarray(contrast))
    v1, v2 = nchw(zs).requires_grad_(True), nchw(zt).requires_grad_(True)
    reference(v1, v2, torch.from_numpy(index), torch.from_numpy(contrast)).backward()
    assert rel_err(got_s, v1.grad) < RTOL and rel_err(got_t, v2.grad) < RTOL
