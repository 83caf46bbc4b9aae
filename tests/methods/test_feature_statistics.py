"""Feature-statistic transfer as objectives: AdaIN-KD and SRRL's teacher head read the frozen
teacher's layers after its last stage (``ctx.teacher_head``); each is zero where it can be
derived by hand, and the step gives them the head without running the teacher again."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses, models
from kd_jax.distill import parsing, student as student_lib
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from kd_jax.methods import Context, Outputs
from kd_jax.methods.statistics import AdaINKD, TeacherHead
from tests import builders


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation)."""


@pytest.fixture(scope="module")
def teacher():
  """A resnet8 teacher with trained-looking BatchNorm statistics: its logits, last-stage map
  and head on a batch of 4 random 16x16x3 images."""
  model = models.create("resnet8", 5)
  variables = models.init(model, jax.random.PRNGKey(0), (16, 16, 3))
  variables = {**variables, "batch_stats": jax.tree.map(
      lambda a: a + 0.3 * jax.random.uniform(jax.random.PRNGKey(1), a.shape),
      variables["batch_stats"])}
  x = jax.random.normal(jax.random.PRNGKey(2), (4, 16, 16, 3))
  logits, features = jax.jit(lambda x: model.apply(variables, x))(x)
  return logits, features["stage3"], functools.partial(models.apply_head, model, variables)


def _ctx(f_s, f_t, logits, head):
  return Context([f_s], [f_t], None, Outputs(logits, {}), {}, None, None, None,
                 teacher_head=head)


def test_the_head_continues_the_last_stage_to_the_teachers_logits(teacher):
  logits, f_t, head = teacher
  np.testing.assert_allclose(np.asarray(head(f_t)), np.asarray(logits), rtol=1e-6, atol=1e-6)


def test_adain_kd_is_zero_when_the_connected_student_has_the_teachers_statistics(teacher):
  """AdaIN(F_T; F_T) = F_T: a student map with the teacher map's per-channel statistics
  (here its spatial mirror image, on another grid size) leaves the teacher's logits as they
  were; the statistics term is zero too."""
  logits, f_t, head = teacher
  mirrored = f_t[:, ::-1, ::-1]
  assert float(AdaINKD().loss(_ctx(mirrored, f_t, logits, head))) == pytest.approx(0.0, abs=1e-9)
  assert float(AdaINKD(kind="kl").loss(_ctx(mirrored, f_t, logits, head))) == pytest.approx(
      0.0, abs=1e-6)
  assert float(AdaINKD().loss(_ctx(2.0 * f_t + 1.0, f_t, logits, head))) > 1e-3


def test_adain_kd_is_the_teacher_heads_mse_on_the_renormalised_map_plus_the_statistics(teacher):
  logits, f_t, head = teacher
  f_s = jax.random.normal(jax.random.PRNGKey(3), (4, 2, 2, f_t.shape[-1])) * 2.0 + 0.5
  renormalised = losses.adain(f_t, f_s, eps=1e-5, unbiased=False)
  want_ain = float(jnp.mean(jnp.square(head(renormalised) - logits)))
  want_stat = float(losses.stat_matching(f_s, f_t, eps=1e-5, unbiased=False))
  assert float(AdaINKD(stat_weight=0.0).loss(_ctx(f_s, f_t, logits, head))) == pytest.approx(
      want_ain, rel=1e-5)
  assert float(AdaINKD(stat_weight=2.0).loss(_ctx(f_s, f_t, logits, head))) == pytest.approx(
      want_ain + 2.0 * want_stat, rel=1e-5)


def test_adain_kd_reaches_the_student_only_through_its_statistics(teacher):
  logits, f_t, head = teacher
  f_s = jax.random.normal(jax.random.PRNGKey(4), f_t.shape)
  grad = jax.grad(lambda f: AdaINKD().loss(_ctx(f, f_t, logits, head)))(f_s)
  # d/dF of a function of (mean, std) over H, W: a + b * (F - mean) per example and channel.
  centred = f_s - f_s.mean(axis=(1, 2), keepdims=True)
  b = (grad * centred).sum(axis=(1, 2)) / (centred ** 2).sum(axis=(1, 2))
  a = grad.mean(axis=(1, 2))
  np.testing.assert_allclose(np.asarray(grad), np.asarray(a[:, None, None] + b[:, None, None]
                                                          * centred), atol=1e-7)


def test_teacher_head_is_zero_when_the_connected_student_map_is_the_teachers(teacher):
  logits, f_t, head = teacher
  assert float(TeacherHead().loss(_ctx(f_t, f_t, logits, head))) == pytest.approx(0.0, abs=1e-10)


def test_teacher_head_is_srrls_mse_plus_the_channel_means_on_one_connector(teacher):
  logits, f_t, head = teacher
  f_s = jax.random.normal(jax.random.PRNGKey(5), f_t.shape)
  mse = float(jnp.mean(jnp.square(head(f_s) - logits)))
  means = float(losses.mean_matching(f_s, f_t))
  assert float(TeacherHead(mean_weight=0.0).loss(_ctx(f_s, f_t, logits, head))) == pytest.approx(
      mse, rel=1e-5)
  assert float(TeacherHead().loss(_ctx(f_s, f_t, logits, head))) == pytest.approx(
      mse + means, rel=1e-5)


def test_adain_refuses_an_unknown_kind():
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.adain: kind must be 'mse' or 'kl'"):
    parsing.parse_objectives({"adain": {"kind": "l1"}}, ["t"], True)


def _state(objectives_cfg, teacher_module=None, teacher_variables=None):
  student, t_model = models.create("resnet8", 10), teacher_module or models.create("resnet14", 10)
  tv = teacher_variables or t_model.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, 1)))
  objs = parsing.parse_objectives(objectives_cfg, ["t"], True)
  tx = builders.optimizer(builders.sgd(0.05), objs)
  step = make_train_step(student, {"t": t_model}, objs, tx, True)
  state = builders.train_state(student, objs, tx, teachers={"t": (t_model, tv)})
  return step, state


@pytest.mark.parametrize("objective", [{"teacher_head": {"mean_weight": 0.0}},
                                       {"adain": {"stat_weight": 0.0}}])
def test_the_teachers_head_alone_trains_the_connector_and_the_students_layers_below_it(
    objective):
  """The head's term alone (no statistics term beside it, no weight decay): its gradient
  reaches the connector and, through it, the student's convolutions; the student's own
  classifier, which the term does not read, and the teacher stay exactly as they were."""
  step, state = _state(objective)
  name = next(iter(objective))
  batch = {"image": np.random.RandomState(0).randn(8, 8, 8, 1).astype(np.float32),
           "label": np.arange(8, dtype=np.int32)}
  new, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
  assert metrics.compute()[f"loss_{name}"] > 0
  moved = lambda tree, old: max(jax.tree.leaves(jax.tree.map(
      lambda a, b: float(jnp.abs(a - b).max()), tree, old)))
  assert moved(new.params["adapters"][name], state.params["adapters"][name]) > 0
  student, before = new.params["student"], state.params["student"]
  assert moved({k: v for k, v in student.items() if k != "fc"},
               {k: v for k, v in before.items() if k != "fc"}) > 0
  assert moved(student["fc"], before["fc"]) == 0
  assert moved(new.teachers, state.teachers) == 0


def test_a_teacher_feature_other_than_the_last_stage_is_refused_in_one_line():
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.adain\.teacher_feature: loss "
                     r"'adain' continues the teacher's map through its remaining layers, which "
                     r"start after its last stage \(stage3\); got stage2$"):
    _state({"adain": {"teacher_feature": "stage2"}})


def test_a_teacher_without_a_head_is_refused_in_one_line():
  """A consolidated student read through one head has no layers after its last stage."""
  module = student_lib.as_teacher("resnet8", 10, {"a": 3}, head="a")
  tv = module.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.teacher_head: loss 'teacher_head' "
                     r"reads the layers after the last stage of teacher 't', but its model "
                     r"\(HeadAsLogits\) does not define them"):
    _state({"teacher_head": {}}, module, tv)
