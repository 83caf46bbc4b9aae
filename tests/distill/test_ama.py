"""Activation map adaptation: the adaptive module's stage (through the frozen teacher's
classifier) and the student's hint loss on its map."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses, models
from kd_jax.methods.ama import AdaptiveModule
from kd_jax.distill.step import make_train_step
from tests import builders
from tests.distill.test_init_phases import SGD, _changed, _setup, _phase_step


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation): a few steps each."""


AMA = {"ce": {}, "ama": {"weight": 100.0}}


def test_the_adapted_teacher_loss_is_the_teachers_classifier_on_the_pooled_map():
  lifted = jnp.broadcast_to(jnp.array([1.0, -1.0]), (2, 3, 3, 2))  # pooled: (1, -1)
  kernel = jnp.array([[2.0, 0.0], [0.0, 1.0]])  # logits: (2, -1)
  bias = jnp.array([0.0, 1.0])                   # logits: (2, 0)
  labels = jnp.array([0, 1])
  want = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(2.0))) / 2
  got = losses.adapted_teacher_loss(lifted, None, labels, kernel, bias, l2_weight=0.0)
  assert float(got) == pytest.approx(want, rel=1e-6)
  pooled_t = jnp.zeros((2, 2))  # The L2 pull: mean((1, -1)^2) = 1, times 0.5.
  got = losses.adapted_teacher_loss(lifted, pooled_t, labels, kernel, bias, l2_weight=0.5)
  assert float(got) == pytest.approx(want + 0.5, rel=1e-6)


def test_the_hint_has_the_students_last_stage_shape_from_the_teachers_map_before_it():
  _, _, objs, state, _ = _setup(AMA)
  ama = next(o for o in objs if o.name == "ama")
  assert ama.student_feature == "last_stage"
  assert ama.teacher_feature == ("before_last_stage", "pooled")
  params = state.params["adapters"]["ama"]
  # resnet14's stage2 is 4x4x32; resnet8's stage3 2x2x64: a 3x3 stride-2 conv, then 3x3.
  assert params["adapter"]["conv1"]["TorchConv_0"]["Conv_0"]["kernel"].shape == (3, 3, 32, 64)
  assert params["lift"]["TorchConv_0"]["Conv_0"]["kernel"].shape == (1, 1, 64, 64)


def _zero_classifier(variables):
  params = dict(variables["params"])
  name = next(k for k in params if models.is_classifier(k))
  params[name] = jax.tree.map(jnp.zeros_like, params[name])
  return {**variables, "params": params}


def test_the_phase_trains_the_adapter_and_lift_only_through_the_teachers_classifier():
  old, new, loss = _phase_step(AMA, "ama")
  assert np.isfinite(loss) and loss > 0
  assert _changed(old.params["adapters"]["ama"], new.params["adapters"]["ama"]) == {
      "adapter": True, "lift": True}
  assert not any(_changed(old.params["student"], new.params["student"]).values())
  assert not any(_changed(old.batch_stats, new.batch_stats).values())
  assert not any(_changed(old.teachers, new.teachers).values())
  # The classifier is the only route: with it zeroed every logit is 0, the loss is log(10)
  # whatever the adapter does, and no stage parameter gets a gradient (no weight decay).
  old, new, loss = _phase_step(AMA, "ama", edit_teacher=_zero_classifier)
  assert float(loss) == pytest.approx(np.log(10), rel=1e-6)
  assert not any(_changed(old.params["adapters"]["ama"], new.params["adapters"]["ama"]).values())


def _hint_distance(state, student, batch):
  """FitNet's mean squared error (numpy, float64) between the student's last-stage map
  (training mode, as in the step) and the eval-mode adapter's map of the teacher's map
  before its last stage."""
  (_, s_feats), _ = student.apply(
      {"params": state.params["student"], "batch_stats": state.batch_stats}, batch["image"],
      train=True, mutable=["batch_stats"])
  aux, aux_state = state.params["adapters"]["ama"], state.objective_state["ama"]["batch_stats"]
  _, t_feats = models.create("resnet14", 10).apply(state.teachers["t"], batch["image"],
                                                   train=False)
  s = s_feats["stage3"]  # resnet8's last stage: [16, 2, 2, 64].
  hint = AdaptiveModule(64, (2, 2)).apply(
      {"params": aux["adapter"], "batch_stats": aux_state["adapter"]}, t_feats["stage2"],
      train=False)
  assert s.shape == hint.shape == (16, 2, 2, 64)
  return np.mean(np.square(np.asarray(s, np.float64) - np.asarray(hint, np.float64)))


def test_the_main_phase_moves_the_student_towards_the_frozen_hint():
  student, teachers, objs, state, batch = _setup({"ama": {"weight": 1.0}})
  step = jax.jit(make_train_step(student, teachers, objs, builders.optimizer(SGD, objs), True))
  new, metrics = step(state, batch, jax.random.PRNGKey(0))
  assert not any(_changed(state.params["adapters"]["ama"], new.params["adapters"]["ama"]).values())
  assert not any(_changed(state.objective_state["ama"], new.objective_state["ama"]).values())
  # The hint loss reaches every layer up to the last stage, not the classifier.
  moved = _changed(state.params["student"], new.params["student"])
  assert moved.pop("fc") is False and all(moved.values()), moved
  before, after = _hint_distance(state, student, batch), _hint_distance(new, student, batch)
  assert float(metrics.compute()["loss_ama"]) == pytest.approx(before, rel=1e-5)
  assert after < before
