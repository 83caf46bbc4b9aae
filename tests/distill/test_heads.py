"""Objectives with learnable heads or state (FitNet, AB, VID, CC, CRD, FSP, statistics)
through the one step: initialised from the models' feature shapes, optimised with the
student, their state (BatchNorm statistics, CRD's memory) carried in the train state."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import models
from kd_jax.distill import host_inputs, parsing
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from tests import builders


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation): a few steps each."""


N = 100  # Training-set size for CRD's memory.


def setup(objectives_cfg, student_name="resnet8", teacher_name="resnet14"):
  student, t_model = models.create(student_name, 10), models.create(teacher_name, 10)
  tv = t_model.init(jax.random.PRNGKey(1), jnp.zeros((2, 8, 8, 1)))
  objs = parsing.parse_objectives(objectives_cfg, ["t"], True)
  # No weight decay: a parameter that changes in a step had a non-zero gradient.
  tx = builders.optimizer(builders.sgd(0.05), objs)
  samplers = builders.samplers(objs, N)
  state = builders.train_state(student, objs, tx, teachers={"t": (t_model, tv)}, index_size=N,
                               samplers=samplers)
  step = jax.jit(make_train_step(student, {"t": t_model}, objs, tx, True, steps_per_epoch=4))
  return state, step, samplers


def batch(seed, samplers=None):
  """16 examples with their labels (``index % 10``, as ``builders.samplers``) and what the
  objectives draw on the host for them."""
  rng = np.random.RandomState(seed)
  index = rng.choice(N, 16, replace=False).astype(np.int32)
  b = {"image": rng.randn(16, 8, 8, 1).astype(np.float32), "label": index % 10, "index": index}
  return {**b, **host_inputs.draw(samplers or {}, b, 0, 0, seed)}


# AB and FSP as main-stage losses (by default they act through their initialisation stage).
MAIN = dict(init_epochs=0, main_phase=True)
WITH_HEADS = {"ce": dict(weight=1.0), "fitnet": dict(weight=100.0), "ab": dict(weight=1.0, **MAIN),
              "vid": dict(weight=1.0), "cc": dict(weight=0.02),
              "crd": dict(weight=0.8, nce_k=32), "fsp": dict(weight=50.0, **MAIN),
              "mean_matching": dict(weight=1.0), "stat_matching": dict(weight=1.0)}


@pytest.fixture(scope="module")
def two_steps():
  state0, step, samplers = setup(WITH_HEADS)
  b1, b2 = batch(0, samplers), batch(1, samplers)
  state1, m1 = step(jax.tree.map(jnp.copy, state0), b1, jax.random.PRNGKey(0))
  state2, m2 = step(jax.tree.map(jnp.copy, state1), b2, jax.random.PRNGKey(0))
  return state0, state1, state2, m1.compute(), m2.compute(), b1


def test_every_objective_reports_a_finite_loss(two_steps):
  *_, m1, m2, _ = two_steps
  for name in WITH_HEADS:
    assert np.isfinite(m1[f"loss_{name}"]) and np.isfinite(m2[f"loss_{name}"]), name


def test_heads_are_created_from_the_feature_shapes_and_optimised(two_steps):
  state0, state1, *_ = two_steps
  aux0, aux1 = state0.params["adapters"], state1.params["adapters"]
  # resnet8 and resnet14 have equal feature shapes: AB's connectors are identities.
  assert sorted(aux0) == ["cc", "crd", "fitnet", "mean_matching", "stat_matching", "vid"]
  reg = aux0["fitnet"]["regressor"]["TorchConv_0"]["Conv_0"]["kernel"]
  assert reg.shape == (1, 1, 32, 32)  # stage2 -> stage2, same size: a 1x1 conv
  for name in aux0:
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(aux0[name]),
                                                         jax.tree.leaves(aux1[name]))]
    assert all(changed), name


def test_teachers_are_not_optimised(two_steps):
  state0, _, state2, *_ = two_steps
  for a, b in zip(jax.tree.leaves(state0.teachers), jax.tree.leaves(state2.teachers)):
    np.testing.assert_array_equal(a, b)


def test_head_batchnorm_statistics_are_carried_in_the_state(two_steps):
  state0, state1, *_ = two_steps
  bs0 = state0.objective_state["fitnet"]["batch_stats"]
  bs1 = state1.objective_state["fitnet"]["batch_stats"]
  assert not np.array_equal(jax.tree.leaves(bs0)[0], jax.tree.leaves(bs1)[0])


def test_crd_memory_is_updated_at_the_batch_indices_and_normalisers_are_set(two_steps):
  state0, state1, _, _, _, b1 = two_steps
  m0, m1 = state0.objective_state["crd"]["memory"], state1.objective_state["crd"]["memory"]
  assert float(m0.z_student) < 0 and float(m1.z_student) > 0 and float(m1.z_teacher) > 0
  touched = np.asarray(b1["index"])
  others = np.setdiff1d(np.arange(N), touched)
  assert not np.any(np.all(np.asarray(m0.student)[touched] == np.asarray(m1.student)[touched], axis=1))
  np.testing.assert_array_equal(np.asarray(m0.student)[others], np.asarray(m1.student)[others])
  np.testing.assert_allclose(np.linalg.norm(np.asarray(m1.teacher)[touched], axis=1), 1.0, rtol=1e-5)


def _message(fn) -> str:
  """The message of the KdJaxError ``fn`` raises (what the command line prints: the state is
  built under jit, and JAX adds a note to the exception that is not part of it)."""
  with pytest.raises(KdJaxError) as info:
    fn()
  return str(info.value)


def test_unbridgeable_fitnet_shapes_fail_at_start_up_in_one_line():
  message = _message(lambda: setup({"fitnet": dict(student_feature="stage3",
                                                   teacher_feature="stage1")}))
  assert message == ("config.objectives.fitnet: loss 'fitnet' cannot compare student features "
                     "[(2, 2, 64)] with teacher features [(8, 8, 16)]: ConvReg cannot map a "
                     "student map of size 2x2 to a teacher map of size 8x8")


def test_fsp_with_unequal_channels_fails_at_start_up_in_one_line():
  message = _message(lambda: setup({"ce": {}, "fsp": {}}, teacher_name="resnet8x4"))
  assert re.fullmatch(r"config\.objectives\.fsp: loss 'fsp' cannot compare .*FSP needs equal "
                      r"channel counts in student and teacher, got \[16, 16, 32, 64\] and "
                      r"\[32, 64, 128, 256\]", message), message


def test_ab_connectors_bridge_wider_teacher_maps():
  state, _, _ = setup({"ce": {}, "ab": {}}, teacher_name="resnet8x4")
  kernels = [v["ConvReg_0"]["TorchConv_0"]["Conv_0"]["kernel"].shape
             for _, v in sorted(state.params["adapters"]["ab"].items())]
  assert kernels == [(1, 1, 16, 64), (1, 1, 32, 128), (1, 1, 64, 256)]
