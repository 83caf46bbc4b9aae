"""Other views of the batch (``Method.views``, MLKD's strong view): made once per step from the
loader's batch, read by the teachers (once per view) and by the student in training mode after
the batch, its BatchNorm statistics updated by each in turn; an objective reads them in
``ctx.views`` or, with ``view=<name>``, as its batch; what cannot work is refused at plan time."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import job, losses, methods, models, recipes
from kd_jax.data import device_augment
from kd_jax.distill import parsing
from kd_jax.distill.objectives import Outputs
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from tests import builders

# The loader's uint8 batch is normalised as the digits are; its flipped view: the same images
# mirrored (no randomness, so a test can recompute it).
SPEC = device_augment.Spec(pad=0, flip=False, mean=(0.3,), std=(0.4,))


class FlipView(methods.Method):
  """KD at T = 1 between the student and the teacher on the mirrored view."""
  views = ("flipped",)

  def make_view(self, view, batch, rng, augment):
    images = device_augment.normalize(batch["image"][:, :, ::-1], augment.mean, augment.std)
    return {**batch, "image": images}

  def loss(self, ctx):
    student, teacher = ctx.views["flipped"]
    return losses.kd(student.logits, teacher.logits, temperature=1.0)


@pytest.fixture(scope="module", autouse=True)
def _registered(fast_compilation):
  methods.register("flip_view")(FlipView)
  yield
  methods.REGISTRY.pop("flip_view", None)


def _setup(objectives_cfg):
  student, t_model = models.create("resnet8", 10), models.create("resnet14", 10)
  tv = t_model.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, 1)))
  objs = parsing.parse_objectives(objectives_cfg, ["t"], True)
  tx = builders.optimizer(builders.sgd(0.05), objs)
  step = make_train_step(student, {"t": t_model}, objs, tx, True, augment=SPEC)
  state = builders.train_state(student, objs, tx, teachers={"t": (t_model, tv)})
  rng = np.random.RandomState(0)
  batch = {"image": rng.randint(0, 256, (16, 8, 8, 1)).astype(np.uint8),
           "label": rng.randint(0, 10, 16).astype(np.int32)}
  return student, t_model, tv, step, state, batch


def test_the_student_reads_the_view_after_the_batch_and_batchnorm_follows_both():
  student, t_model, tv, step, state, batch = _setup(
      {"ce": {}, "ce_flipped": dict(loss="ce", view="flipped"), "flip_view": {}})
  sv = {"params": state.params["student"], "batch_stats": state.batch_stats}
  new_state, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
  got = metrics.compute()

  weak = device_augment.normalize(jnp.asarray(batch["image"]), SPEC.mean, SPEC.std)
  flipped = device_augment.normalize(jnp.asarray(batch["image"])[:, :, ::-1], SPEC.mean, SPEC.std)
  (zs, _), after_weak = student.apply(sv, weak, train=True, mutable=["batch_stats"])
  (zs_f, _), after_both = student.apply({**sv, **after_weak}, flipped, train=True,
                                        mutable=["batch_stats"])
  zt_f, _ = t_model.apply(tv, flipped, train=False)
  y = jnp.asarray(batch["label"])
  assert got["loss_ce"] == pytest.approx(float(losses.cross_entropy(zs, y)), rel=1e-5)
  assert got["loss_ce_flipped"] == pytest.approx(float(losses.cross_entropy(zs_f, y)), rel=1e-5)
  assert got["loss_flip_view"] == pytest.approx(float(losses.kd(zs_f, zt_f, temperature=1.0)),
                                                rel=1e-5)
  for a, b in zip(jax.tree.leaves(new_state.batch_stats), jax.tree.leaves(after_both)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _convs(objectives_cfg) -> int:
  *_, step, state, batch = _setup(objectives_cfg)
  jaxpr = jax.make_jaxpr(step)(state, batch, jax.random.PRNGKey(0))
  return builders.count_primitive(jaxpr.jaxpr, "conv_general_dilated")


def test_the_teacher_runs_once_per_view_and_the_student_once_more(monkeypatch):
  """resnet14 has 15 convolutions; a second view adds them once and one more student forward
  and backward (what ``ce`` alone costs beyond the teacher's)."""
  monkeypatch.setenv("KD_JAX_CONV", "native")  # Convolutions as conv primitives, to count.
  teacher_convs = 15
  kd = _convs({"ce": {}, "kd": {}})
  student_pass = kd - teacher_convs
  assert _convs({"ce": {}, "kd": {}, "flip_view": {}}) == kd + teacher_convs + student_pass
  assert _convs({"ce": {}, "kd": {}, "flip_view": {},
                 "ce_flipped": dict(loss="ce", view="flipped")}) == (
                     kd + teacher_convs + student_pass)


def _digits_job(objectives, **data):
  c = recipes.digits_distill("kd")
  c.num_epochs = 1
  c.runs.kd.objectives = objectives
  if data:
    c.runs.kd.data = data
  return c


@pytest.mark.parametrize("objectives,data,message", [
    ({"ce": {}, "ce_strong": dict(loss="ce", view="strong")}, {},
     r"^\[kd\] config\.objectives\.ce_strong\.view: no objective makes a view 'strong' \(views "
     r"made: none\)$"),
    ({"ce": {}, "mlkd": {}}, {},
     r"^\[kd\] config\.objectives\.mlkd: mlkd draws its strong view on the device from the "
     r"loader's uint8 images: it needs config\.data\.augment_on='device' .*$"),
    ({"ce": {}, "mlkd": {}, "function_matching": {}}, dict(augment_on="device"),
     r"^\[kd\] config\.objectives\.mlkd: its view 'strong' is made from the loader's batch, "
     r"which function_matching changes \(transform_batch\); a run can have one of them$"),
    ({"ce": {}, "mlkd": {}, "ft": dict(view="strong")}, dict(augment_on="device"),
     r"^\[kd\] config\.objectives\.ft: ft has an initialisation phase \(init_epochs=30\), "
     r"whose steps read the loader's batch alone; it cannot read or make another view "
     r"\(strong\)$"),
])
def test_views_that_cannot_be_had_are_refused_before_anything_trains(objectives, data, message,
                                                                   tmp_path):
  with pytest.raises(KdJaxError, match=message) as err:
    job.run(_digits_job(objectives, **data), str(tmp_path / "w"))
  assert "\n" not in str(err.value) and not (tmp_path / "w" / "teacher").exists()


def test_a_teacher_cache_is_refused_beside_a_view(tmp_path):
  c = _digits_job({"ce": {}, "mlkd": {}}, augment_on="device")
  c.teacher_cache = "memory"
  with pytest.raises(KdJaxError, match=r"^\[kd\] config\.teacher_cache: objective 'mlkd' reads "
                     r"another view of the batch \(strong\), drawn anew in every step"):
    job.run(c, str(tmp_path / "w"))


def test_outputs_of_a_view_reach_the_loss_through_the_context():
  zs, zt = jnp.ones((2, 3)), jnp.zeros((2, 3))
  obj = parsing.parse_objectives({"flip_view": {}}, ["t"], True)[0]
  loss, _ = obj(Outputs(zt, {}), {"t": Outputs(zt, {})}, {},
                views={"flipped": (Outputs(zs, {}), {"t": Outputs(zt, {})})})
  assert float(loss) == pytest.approx(float(losses.kd(zs, zt, temperature=1.0)))
