"""Initialisation phases (FT, AB, FSP): what each phase trains, and what the main phase then does."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax import models
from kd_jax.distill import parsing
from kd_jax.distill.step import make_phase_step, make_train_step
from kd_jax.errors import KdJaxError
from kd_jax.training import phases
from tests import builders


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation): a few steps each."""


# No weight decay: a parameter that a step changes had a non-zero gradient.
SGD = builders.sgd(0.05)


def _setup(objectives_cfg, teacher="resnet14", edit_teacher=lambda variables: variables):
  """resnet8 student; the teacher's stages are 16/32/64 (resnet14) or 64/128/256 (resnet8x4)
  channels wide; 8x8x1 inputs."""
  student, t_model = models.create("resnet8", 10), models.create(teacher, 10)
  x = jnp.asarray(np.random.RandomState(0).randn(16, 8, 8, 1), jnp.float32)
  tv = edit_teacher(t_model.init(jax.random.PRNGKey(1), x[:2]))
  objs = parsing.parse_objectives(objectives_cfg, ["t"], True)
  state = builders.train_state(student, objs, builders.optimizer(SGD, objs),
                               teachers={"t": (t_model, tv)})
  batch = {"image": x, "label": jnp.arange(16) % 10, "index": jnp.arange(16)}
  return student, {"t": t_model}, objs, state, batch


def _phase_step(objectives_cfg, name, teacher="resnet14", **setup):
  student, teachers, objs, state, batch = _setup(objectives_cfg, teacher, **setup)
  obj = next(o for o in objs if o.name == name)
  tx = phases.phase_optimizer(obj, SGD, 0.05)
  state = state.replace(opt_state=tx.init(state.params))
  new, metrics = jax.jit(make_phase_step(student, teachers, obj, tx))(
      state, batch, jax.random.PRNGKey(0))
  return state, new, metrics.compute()["loss"]


def _changed(before, after):
  """{top-level name: whether any leaf below it changed}."""
  return {k: any(not np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(before[k]), jax.tree.leaves(after[k]))) for k in before}


def test_ft_phase_trains_only_the_paraphraser():
  old, new, loss = _phase_step({"ce": {}, "ft": {"weight": 200.0}}, "ft")
  assert np.isfinite(loss) and loss > 0
  assert _changed(old.params["adapters"]["ft"], new.params["adapters"]["ft"]) == {
      "paraphraser": True, "translator": False}
  assert not any(_changed(old.params["student"], new.params["student"]).values())
  assert not any(_changed(old.batch_stats, new.batch_stats).values())


def test_ab_phase_trains_connectors_and_student_features_but_not_the_classifier():
  old, new, loss = _phase_step({"ce": {}, "ab": {}}, "ab", teacher="resnet8x4")
  assert np.isfinite(loss) and loss > 0
  student = _changed(old.params["student"], new.params["student"])
  assert student.pop("fc") is False and all(student.values()), student
  assert all(_changed(old.params["adapters"]["ab"], new.params["adapters"]["ab"]).values())
  # The reference's student is in eval mode in the stage: its BN statistics do not move.
  assert not any(_changed(old.batch_stats, new.batch_stats).values())
  # The connectors' own BN is in training mode.
  assert any(_changed(old.objective_state["ab"], new.objective_state["ab"]).values())


def test_fsp_phase_trains_student_features_but_not_the_classifier():
  old, new, loss = _phase_step({"ce": {}, "fsp": {}}, "fsp")
  assert np.isfinite(loss) and loss > 0
  student = _changed(old.params["student"], new.params["student"])
  assert student.pop("fc") is False and all(student.values()), student


def _main_step(objectives_cfg, teacher="resnet14", opt=SGD):
  student, teachers, objs, state, batch = _setup(objectives_cfg, teacher)
  tx = builders.optimizer(opt, objs)
  state = state.replace(opt_state=tx.init(state.params))
  new, metrics = jax.jit(make_train_step(student, teachers, objs, tx, True))(
      state, batch, jax.random.PRNGKey(0))
  return state, new, metrics.compute()


def test_main_phase_trains_the_translator_and_keeps_the_paraphraser_frozen():
  """Frozen means not optimised at all: with the recipe's weight decay and momentum (which
  move any parameter they reach, gradient or not) the paraphraser stays bit for bit; the
  translator has a gradient (checked without decay)."""
  old, new, m = _main_step({"ce": {}, "ft": {"weight": 200.0}},
                           opt=builders.sgd(0.05, weight_decay=5e-4, momentum=0.9))
  assert np.isfinite(m["loss_ft"]) and m["loss_ft"] > 0
  assert _changed(old.params["adapters"]["ft"], new.params["adapters"]["ft"]) == {
      "paraphraser": False, "translator": True}
  old, new, _ = _main_step({"ce": {}, "ft": {"weight": 200.0}})
  assert _changed(old.params["adapters"]["ft"], new.params["adapters"]["ft"])["translator"]


def test_a_phase_optimises_with_sgd_at_its_rate_with_the_main_momentum_and_decay():
  """The references' phase optimiser: SGD at the phase's lr with the main optimiser's
  momentum and weight decay, never Nesterov, only the phase's parameters. Two updates with a
  constant gradient g, by hand: p1 = p0 - lr (g + wd p0); the second moves by
  -lr (0.9 (g + wd p0) + g + wd p1)."""
  _, _, objs, state, _ = _setup({"ce": {}, "ft": {}})
  ft = objs[1]
  main = builders.sgd(0.05, weight_decay=5e-4, momentum=0.9, nesterov=True)
  tx = phases.phase_optimizer(ft, main, 0.1)
  params = state.params
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  opt_state = tx.init(params)
  u1, opt_state = tx.update(grads, opt_state, params)
  p1 = jax.tree.map(lambda p, u: p + u, params, u1)
  u2, _ = tx.update(grads, opt_state, p1)
  for leaf0, leaf1, got1, got2 in zip(*(jax.tree.leaves(t["adapters"]["ft"]["paraphraser"])
                                        for t in (params, p1, u1, u2))):
    g0 = 0.5 + 5e-4 * np.asarray(leaf0, np.float64)
    g1 = 0.5 + 5e-4 * np.asarray(leaf1, np.float64)
    np.testing.assert_allclose(got1, -0.1 * g0, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(got2, -0.1 * (0.9 * g0 + g1), rtol=1e-5, atol=1e-8)
  for frozen in (u2["student"], u2["adapters"]["ft"]["translator"]):
    assert not any(np.any(u) for u in jax.tree.leaves(frozen))


def test_ab_and_fsp_act_only_through_their_phase_by_default():
  objs = parsing.parse_objectives({"ce": {}, "ab": {}, "fsp": {}, "ft": {}}, ["t"], True)
  by_name = {o.name: o for o in objs}
  assert [(n, by_name[n].init_epochs, by_name[n].main_phase) for n in ("ab", "fsp", "ft")] == [
      ("ab", 30, False), ("fsp", 30, False), ("ft", 30, True)]
  old, new, m = _main_step({"ce": {}, "ab": {}}, teacher="resnet8x4")
  assert "loss_ab" not in m and set(m) == {"loss", "loss_ce", "accuracy"}
  assert not any(_changed(old.params["adapters"]["ab"], new.params["adapters"]["ab"]).values())


def test_ab_can_also_be_a_main_phase_loss_without_its_phase():
  objs = parsing.parse_objectives({"ce": {}, "ab": {"init_epochs": 0, "main_phase": True}}, ["t"], True)
  assert objs[0].init_epochs == 0 and objs[0].main_phase
  _, _, m = _main_step({"ce": {}, "ab": {"init_epochs": 0, "main_phase": True}},
                       teacher="resnet8x4")
  assert np.isfinite(m["loss_ab"])


@pytest.mark.parametrize("entry,message", [
    ({"init_epochs": -1}, r"config\.objectives\.ab\.init_epochs must be an integer >= 0, got -1"),
    ({"init_lr": 0}, r"config\.objectives\.ab\.init_lr must be a number > 0, got 0"),
    ({"main_phase": False, "init_epochs": 0},
     r"config\.objectives\.ab: main_phase=False and init_epochs=0 leave the loss nothing to do"),
])
def test_bad_phase_fields_are_one_line_errors(entry, message):
  with pytest.raises(KdJaxError, match="^" + message + "$"):
    parsing.parse_objectives({"ce": {}, "ab": entry}, ["t"], True)


def test_phase_fields_belong_to_methods_with_a_phase():
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.at: unknown field\(s\) init_epochs "
                     r"for loss 'at'; valid: weight, loss, teacher, student_feature"):
    parsing.parse_objectives({"ce": {}, "at": {"init_epochs": 3}}, ["t"], True)


def test_ft_phase_learning_rate_follows_the_reference_and_batch_scaling():
  objs = parsing.parse_objectives({"ce": {}, "ft": {}}, ["t"], True)
  ft = objs[1]
  config = ml_collections.ConfigDict(dict(model="resnet8x4", batch_size=128, optimizer=dict(
      lr=0.05, lr_reference_batch=64)))
  assert phases.phase_learning_rate(ft, config) == pytest.approx(0.02)
  config.model = "vgg8"
  assert phases.phase_learning_rate(ft, config) == pytest.approx(0.1)
