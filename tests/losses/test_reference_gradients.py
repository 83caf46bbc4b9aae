"""RepDistiller's objectives (and KD, DKD) equal their reference implementations
(``torch_reference``, float64 autograd) in gradient, w.r.t. the student's inputs, in float32
within 1e-5 relative (of the largest element), as test_reference_match.py checks their values;
also where a student's and a teacher's value tie exactly (a dead position, a zero row), where
PyTorch's ``abs`` has gradient 0 and ``jnp.abs``'s is 1 (``losses.absolute``)."""
import jax
import numpy as np
import pytest
import torch

from kd_jax import losses, methods
from kd_jax.methods import Context
from tests.losses import torch_reference as ref
from tests.losses.test_reference_match import maps, nchw, rel_err

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
