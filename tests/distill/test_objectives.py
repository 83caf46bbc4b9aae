"""Objectives as data: feature selection, parsing, and every wired loss through the one step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses, models
from kd_jax.distill import features, parsing
from kd_jax.distill.objectives import Outputs
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from tests import builders


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation): one step each."""


FEATURES = {"stem": 0, "stage1": 1, "stage2": 2, "stage3": 3, "preact/stage1": 11,
            "preact/stage2": 12, "preact/stage3": 13, "pooled": 4}


@pytest.mark.parametrize("spec,want", [
    ("stages", [1, 2, 3]), ("preact_stages", [11, 12, 13]), ("last_stage", [3]),
    ("stem_and_stages", [0, 1, 2, 3]), ("pooled", [4]), (("stage2", "stem"), [2, 0])])
def test_feature_tokens_follow_repdistiller_feat_lists(spec, want):
  assert features.select_features(FEATURES, spec, "x") == want


def test_unknown_feature_is_one_line_naming_the_field():
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.at\.student_feature: the model has "
                     r"no feature 'stage9'; it has pooled, preact/stage1"):
    features.select_features(FEATURES, "stage9", "config.objectives.at.student_feature")


def test_parse_fills_reference_defaults():
  objs = parsing.parse_objectives({"at": {"weight": 1000.0}, "sp": {"weight": 3000.0},
                           "rkd": {}, "ce": {"weight": 0.0}}, ["t"], True)
  by_name = {o.name: o for o in objs}
  assert sorted(by_name) == ["at", "rkd", "sp"]  # weight 0: dropped
  assert by_name["at"].student_feature == "stages" and by_name["at"].teacher == "t"
  assert by_name["sp"].teacher_feature == "last_stage"
  assert by_name["rkd"].student_feature == "pooled"


def test_cross_entropy_reads_only_the_labelled_examples():
  """With data.labeled_fraction < 1 batches carry label_mask; CE averages over mask == 1."""
  ce = parsing.parse_objectives({"ce": {}}, [], True, all_labeled=False)[0]
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
  batch = {"label": jnp.array([0, 0, 1]), "label_mask": jnp.array([1.0, 1.0, 0.0])}
  loss, _ = ce(Outputs(logits, {}), {}, batch)
  want = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(2.0))) / 2
  assert float(loss) == pytest.approx(want, rel=1e-6)


def test_losses_needing_every_label_are_refused_with_a_labelled_fraction():
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.dkd: loss 'dkd' needs the label of "
                     r"every training example, but config\.data\.labeled_fraction < 1$"):
    parsing.parse_objectives({"ce": {}, "dkd": {}}, ["t"], True, all_labeled=False)


def test_logit_losses_take_no_feature_fields():
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.kd\.student_feature: loss 'kd' "
                     r"reads logits, not features"):
    parsing.parse_objectives({"kd": {"student_feature": "pooled"}}, ["t"], True)


def _setup(objectives_cfg, teacher=True, student="resnet8"):
  student, t_model = models.create(student, 10), models.create("resnet14", 10)
  tv = t_model.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, 1)))
  objs = parsing.parse_objectives(objectives_cfg, ["t"] if teacher else [], True)
  teachers = {"t": t_model} if teacher else {}
  tx = builders.optimizer(builders.sgd(0.05), objs)
  step = make_train_step(student, teachers, objs, tx, True, steps_per_epoch=4)
  state = builders.train_state(student, objs, tx,
                               teachers={"t": (t_model, tv)} if teacher else {})
  sv = {"params": state.params["student"], "batch_stats": state.batch_stats}
  rng = np.random.RandomState(0)
  batch = {"image": rng.randn(16, 8, 8, 1).astype(np.float32),
           "label": rng.randint(0, 10, 16).astype(np.int32)}
  return student, t_model, sv, tv, objs, step, state, batch


ALL_WIRED = {"ce": dict(weight=1.0), "kd": dict(weight=0.9, temperature=4.0),
             "dkd": dict(weight=1.0, beta=8.0), "at": dict(weight=1000.0),
             "nst": dict(weight=50.0), "sp": dict(weight=3000.0), "rkd": dict(weight=1.0),
             "pkt": dict(weight=30000.0), "dist": dict(weight=2.0, temperature=4.0),
             "kd_ls": dict(loss="kd", weight=9.0, temperature=2.0, logit_stand=True),
             "dkd_ls": dict(loss="dkd", weight=1.0, alpha=9.0, beta=72.0, temperature=2.0,
                            logit_stand=True),
             "nkd": dict(weight=1.0), "wttm": dict(weight=1.0, gamma=0.2),
             "ctkd": dict(weight=0.9), "ctkd_dkd": dict(loss="ctkd", weight=1.0, base="dkd")}


def test_every_wired_objective_reports_the_loss_of_the_shared_outputs():
  student, t_model, sv, tv, objs, step, state, batch = _setup(ALL_WIRED)
  new_state, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
  got = metrics.compute()
  @jax.jit
  def direct(sv, tv, batch, adapters):
    """The same losses on separate forward passes (student training mode, teacher frozen)."""
    (zs, fs), _ = student.apply(sv, batch["image"], train=True, mutable=["batch_stats"])
    zt, ft = t_model.apply(tv, batch["image"], train=False)
    s, t = Outputs(zs, fs), {"t": Outputs(zt, ft)}
    return {o.name: o(s, t, batch, epoch=jnp.float32(1.0), adapter_params=adapters.get(o.name))[0]
            for o in objs}

  want = direct(sv, tv, batch, state.params["adapters"])
  for o in objs:
    assert np.isfinite(got[f"loss_{o.name}"])
    assert got[f"loss_{o.name}"] == pytest.approx(float(want[o.name]), rel=1e-4), o.name
  assert got["loss"] == pytest.approx(sum(o.weight * got[f"loss_{o.name}"] for o in objs), rel=1e-5)
  assert int(new_state.step) == 1 and int(new_state.bad_step) == -1


def test_warmup_reads_the_epoch_of_the_step():
  """4 steps per epoch: step 5 is in epoch 2, so DKD and ReviewKD are scaled by 2/20 (one
  step holds both: one compilation)."""
  names = ("dkd", "reviewkd")
  *_, step, state, batch = _setup({n: dict(weight=1.0) for n in names})
  step = jax.jit(step)  # One compilation for both steps.
  m1 = step(state, batch, jax.random.PRNGKey(0))[1].compute()
  m2 = step(state.replace(step=jnp.asarray(5, state.step.dtype)), batch,
            jax.random.PRNGKey(0))[1].compute()
  for n in names:
    assert m1[f"loss_{n}"] > 0, n
    assert m2[f"loss_{n}"] == pytest.approx(2 * m1[f"loss_{n}"], rel=1e-5), n


def _convs(objectives_cfg, teacher=True, student="resnet8") -> int:
  *_, step, state, batch = _setup(objectives_cfg, teacher, student)
  jaxpr = jax.make_jaxpr(step)(state, batch, jax.random.PRNGKey(0))
  return builders.count_primitive(jaxpr.jaxpr, "conv_general_dilated")


def test_the_teacher_runs_once_per_step_whatever_reads_it(monkeypatch):
  """resnet14 has 15 convolutions; the student's forward + backward are the rest."""
  monkeypatch.setenv("KD_JAX_CONV", "native")  # Convolutions as conv primitives, to count.
  teacher_convs = 15
  student_only = _convs({"ce": {}}, teacher=False)
  one_reader = _convs({"ce": {}, "kd": {}})
  three_readers = _convs({"ce": {}, "kd": {}, "at": {}, "rkd": {}})
  assert one_reader == student_only + teacher_convs
  assert three_readers == one_reader
  # The logit baselines of 2022-2024 read the same teacher outputs.
  baselines = _convs({"ce": {}, "dist": {}, "nkd": {}, "wttm": {}, "ctkd": {},
                      "dkd": dict(logit_stand=True)})
  assert baselines == one_reader
  # ReviewKD adds its ABFs' convolutions (forward, and backward to their parameters and the
  # student's maps), not the teacher's.
  student, t_model, sv, tv, objs, step, state, batch = _setup({"reviewkd": {}})
  obj, adapter = objs[0], objs[0].method.adapter()
  s_maps, t_maps = obj.select(*_outputs(student, t_model, sv, tv, batch))

  def abf_loss(params, s_maps):
    return sum(jnp.sum(m) for m in adapter.apply(
        {"params": params, "batch_stats": state.objective_state["reviewkd"]["batch_stats"]},
        s_maps, t_maps, True, mutable=["batch_stats"])[0][0])

  abf = builders.count_primitive(jax.make_jaxpr(jax.grad(abf_loss, argnums=(0, 1)))(
      state.params["adapters"]["reviewkd"], s_maps).jaxpr, "conv_general_dilated")
  assert abf > 0 and _convs({"ce": {}, "kd": {}, "reviewkd": {}}) == one_reader + abf


DEIT_STUDENT = "vit_micro_distilled_patch2_8"


def test_the_teacher_runs_once_per_step_for_a_vit_student_with_a_distillation_token(monkeypatch):
  """The ViT has no convolution (its patch embedding is a matmul): every convolution of the
  step is the resnet14 teacher's 15, however many objectives read it."""
  monkeypatch.setenv("KD_JAX_CONV", "native")
  assert _convs({"ce": {}, "deit": {}, "kd": {}, "rkd": {}}, student=DEIT_STUDENT) == 15


def test_deit_trains_the_class_head_with_ce_and_the_distillation_head_with_the_teacher():
  """Through the one step: loss_ce is CE of the class head (the training logits), loss_deit
  CE of the distillation head with the teacher's argmax; the eval logits average both."""
  student, t_model, sv, tv, objs, step, state, batch = _setup(
      {"ce": dict(weight=0.5), "deit": dict(weight=0.5)}, student=DEIT_STUDENT)
  _, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
  got = metrics.compute()
  _, feats = student.apply(sv, batch["image"], train=True, rngs={"dropout": jax.random.PRNGKey(0)})
  zt, _ = t_model.apply(tv, batch["image"], train=False)
  y = batch["label"]
  assert got["loss_ce"] == pytest.approx(float(losses.cross_entropy(feats["logits/class"], y)),
                                         rel=1e-5)
  assert got["loss_deit"] == pytest.approx(float(losses.cross_entropy(
      feats["logits/dist"], jnp.argmax(zt, -1))), rel=1e-5)
  eval_logits, feats = student.apply(sv, batch["image"], train=False)
  np.testing.assert_allclose(eval_logits, (feats["logits/class"] + feats["logits/dist"]) / 2,
                             rtol=1e-6)


def _outputs(student, t_model, sv, tv, batch):
  """The student's and the teacher's outputs on ``batch`` (as the objectives read them)."""
  zs, fs = student.apply(sv, batch["image"], train=False)
  zt, ft = t_model.apply(tv, batch["image"], train=False)
  return Outputs(zs, fs), {"t": Outputs(zt, ft)}


def test_ctkd_trains_its_temperature_against_the_student():
  """global_T set to -4 (T = 1 + 20 sigmoid(-4) = 1.36), a step in epoch 11 (lambda = -1,
  past the 10 epochs of the schedule): global_T moves by -lr * lambda * dL/dg = +lr * dL/dg,
  up the KD loss the student goes down (no weight decay here)."""
  student, t_model, sv, tv, objs, step, state, batch = _setup({"ctkd": {}})
  assert state.params["adapters"]["ctkd"]["global_T"].tolist() == [1.0]  # The reference's init.
  g0 = jnp.full((1,), -4.0)
  params = {**state.params, "adapters": {"ctkd": {"global_T": g0}}}
  state = state.replace(params=params, step=jnp.asarray(40, state.step.dtype))  # 4 steps/epoch.
  new_state, _ = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
  (zs, _), _ = student.apply(sv, batch["image"], train=True, mutable=["batch_stats"])
  zt, _ = t_model.apply(tv, batch["image"], train=False)

  def kd_at(g):  # The KD loss at temperature 1 + 20 sigmoid(g), without the reversal.
    return losses.kd(zs, zt, temperature=1.0 + 20.0 * jax.nn.sigmoid(g[0]))

  ascent = 0.05 * float(jax.grad(kd_at)(g0)[0])
  assert abs(ascent) > 1e-4
  moved = float(new_state.params["adapters"]["ctkd"]["global_T"][0]) + 4.0
  assert moved == pytest.approx(ascent, rel=1e-2)


def test_ctkd_on_dkd_needs_labels_and_on_kd_does_not():
  assert parsing.parse_objectives({"ctkd": {}}, ["t"], False)[0].loss == "ctkd"
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.ctkd: loss 'ctkd' needs labels"):
    parsing.parse_objectives({"ctkd": dict(base="dkd")}, ["t"], False)
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.ctkd: ctkd: base must be 'kd' or "
                     r"'dkd', got 'dist'$"):
    parsing.parse_objectives({"ctkd": dict(base="dist")}, ["t"], True)


def test_reading_the_teachers_head_runs_no_teacher_convolution_again(monkeypatch):
  """AdaIN-KD and the teacher-head loss run the teacher's layers after its last stage (pool
  and classifier for a ResNet) on the student's side: they cost what channel-statistic
  matching on the same connector costs, the teacher still runs once."""
  monkeypatch.setenv("KD_JAX_CONV", "native")
  same_connectors = _convs({"ce": {}, "mean_matching": {}, "stat_matching": {}})
  assert _convs({"ce": {}, "adain": {}, "teacher_head": {}}) == same_connectors


@pytest.mark.parametrize("entry, reads", [(dict(loss="kd", teacher="b"), "b"),
                                          (dict(loss="at", teacher="a"), "a")])
def test_an_objective_reads_the_teacher_it_names_and_no_other(entry, reads):
  """Two teachers of one architecture, initialised apart: the loss changes with the named
  teacher's outputs and not with the other's."""
  student, t_model = models.create("resnet8", 10), models.create("resnet14", 10)
  x = np.random.RandomState(0).randn(4, 8, 8, 1).astype(np.float32)
  s = Outputs(*student.apply(student.init(jax.random.PRNGKey(0), x), x, train=False))
  a, b = (Outputs(*t_model.apply(t_model.init(jax.random.PRNGKey(k), x), x, train=False))
          for k in (1, 2))
  obj = parsing.parse_objectives({"x": entry}, ["a", "b"], True)[0]
  loss = lambda teachers: float(obj(s, teachers, {})[0])
  other = "b" if reads == "a" else "a"
  given = {"a": a, "b": b}  # Configured in this order.
  assert loss(given) == loss({**given, other: given[reads]})
  assert loss(given) != loss({**given, reads: given[other]})
