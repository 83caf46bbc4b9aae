"""Several teachers: one head per teacher on a shared backbone (consolidation), objectives
over a list of teachers (amalgamation), per-task evaluation, and one pass per teacher."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax import plan
from kd_jax import checkpoint as ckpt_lib
from kd_jax import models
from kd_jax.distill import parsing, student as student_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.objectives import Outputs
from kd_jax.distill.step import eval_metrics_class, make_train_step
from kd_jax.errors import KdJaxError
from tests import builders


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation): a few steps each."""


X = jnp.zeros((2, 8, 8, 1))
# Three teachers of three architectures and label spaces.
TEACHERS = {"gen": ("resnet14", 10), "low": ("wrn_16_1", 5), "high": ("vgg8", 5)}


def _teachers():
  mods = {n: models.create(m, c) for n, (m, c) in TEACHERS.items()}
  return mods, {n: m.init(jax.random.PRNGKey(i), X) for i, (n, m) in enumerate(mods.items())}


def _student(heads=("gen", "low", "high")):
  return student_lib.create("resnet8", 10, {h: TEACHERS[h][1] for h in heads})


def test_the_student_has_one_head_per_teacher_sized_to_its_classes():
  student = _student()
  variables = student.init(jax.random.PRNGKey(0), X)
  assert set(variables["params"]) == {"backbone", "head_gen", "head_low", "head_high"}
  logits, feats = student.apply(variables, X)
  assert logits.shape == (2, 10)  # The backbone's own classifier.
  assert {k: v.shape for k, v in feats.items() if k.startswith("logits/")} == {
      "logits/gen": (2, 10), "logits/low": (2, 5), "logits/high": (2, 5)}
  own = student_lib.backbone_variables(variables, {"gen": 10})
  assert set(own["params"]) == set(models.create("resnet8", 10).init(
      jax.random.PRNGKey(0), X)["params"])


def test_head_routing_sends_each_teachers_loss_to_its_own_head_only():
  student = _student()
  variables = student.init(jax.random.PRNGKey(0), X)
  objs = {o.name: o for o in parsing.parse_objectives(
      {f"kd_{t}": dict(loss="kd", teacher=t) for t in TEACHERS}, list(TEACHERS), False)}
  t_out = {n: Outputs(jax.random.normal(jax.random.PRNGKey(i), (4, c)), {})
           for i, (n, (_, c)) in enumerate(TEACHERS.items())}
  images = jax.random.normal(jax.random.PRNGKey(9), (4, 8, 8, 1))

  def loss(params, name):
    (z, f), _ = student.apply({**variables, "params": params}, images, train=True,
                              mutable=["batch_stats"])
    return objs[name](Outputs(z, f), t_out, {})[0]

  every_grad = jax.jit(lambda p: {n: jax.grad(loss)(p, f"kd_{n}") for n in TEACHERS})
  for name, grads in every_grad(variables["params"]).items():
    norms = {k: float(optax_norm(v)) for k, v in grads.items()}
    assert norms[f"head_{name}"] > 0 and float(optax_norm(grads["backbone"])) > 0
    assert all(norms[f"head_{other}"] == 0 for other in TEACHERS if other != name)
    assert float(optax_norm(grads["backbone"]["fc"])) == 0  # Not the backbone's classifier.


def optax_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def test_a_list_of_teachers_reads_their_logits_concatenated_in_order():
  kd = parsing.parse_objectives({"kd": dict(teacher=["low", "high"], temperature=2.0)},
                        list(TEACHERS), False)[0]
  zs = jax.random.normal(jax.random.PRNGKey(0), (3, 10))
  t_out = {"low": Outputs(jax.random.normal(jax.random.PRNGKey(1), (3, 5)), {}),
           "high": Outputs(jax.random.normal(jax.random.PRNGKey(2), (3, 5)), {})}
  got, _ = kd(Outputs(zs, {}), t_out, {})
  from kd_jax import losses
  want = losses.kd(zs, jnp.concatenate([t_out["low"].logits, t_out["high"].logits], -1),
                   temperature=2.0)
  assert float(got) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("entry,message", [
    (dict(loss="at", teacher=["gen", "low"]),
     r"^config\.objectives\.x\.teacher: loss 'at' reads one teacher, got \['gen', 'low'\]$"),
    (dict(loss="kd", teacher=["gen", "gen"]),
     r"^config\.objectives\.x\.teacher must list distinct teachers, got \['gen', 'gen'\]$"),
    (dict(loss="cfl", teacher=["gen", "mid"]),
     r"^config\.objectives\.x\.teacher: 'mid' is not a configured teacher"),
])
def test_bad_teacher_lists_fail_in_one_line(entry, message):
  with pytest.raises(KdJaxError, match=message):
    parsing.parse_objectives({"x": entry}, list(TEACHERS), False)


def test_task_accuracy_restricts_examples_and_logits_to_the_tasks_classes():
  """Task a = classes {0, 1}, task b = {2, 3}. Example 0 (label 1): logits argmax overall
  is 3, but within {0, 1} it is 1 -> correct for a. Example 1 (label 2): within {2, 3}
  argmax is 3 -> wrong for b. Example 2 (label 0): within {0, 1} argmax is 1 -> wrong."""
  cls = eval_metrics_class(4, {"a": (0, 1), "b": (2, 3)})
  logits = jnp.array([[0.0, 5.0, 1.0, 9.0], [0.0, 0.0, 1.0, 2.0], [1.0, 2.0, 0.0, 0.0]])
  labels = jnp.array([1, 2, 0])
  m = cls.single_from_model_output(loss=jnp.zeros(3), logits=logits, labels=labels,
                                   mask=jnp.ones(3)).compute()
  assert float(m["accuracy_a"]) == pytest.approx(0.5)
  assert float(m["accuracy_b"]) == pytest.approx(0.0)
  assert float(m["accuracy"]) == pytest.approx(0.0)


@pytest.mark.parametrize("head", [None, "low", "high"])
def test_evaluation_scores_the_chosen_head_over_the_real_examples_only(head):
  """A student with three heads evaluated on a padded batch (the last 3 of 8 are padding):
  CE, accuracy and top-5 are those of the named head's logits (``None``: the backbone's
  classifier) over the 5 real examples, computed here in numpy."""
  from kd_jax.distill.step import make_eval_step
  from kd_jax.distill.state import TrainState
  student = _student()
  variables = student.init(jax.random.PRNGKey(3), X)
  images = np.random.RandomState(1).randn(8, 8, 8, 1).astype(np.float32)
  logits, feats = student.apply(variables, images, train=False)
  z = np.asarray(feats[f"logits/{head}"] if head else logits, np.float64)
  labels = np.argsort(-z, axis=1)[:, 1]  # Each example's second choice: top-1 wrong,
  labels[:2] = np.argmax(z[:2], axis=1)  # but for the first two; top-5 right.
  labels[2] = np.argmin(z[2])            # Example 2: wrong for top-5 too.
  mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)
  classes = z.shape[1]
  state = TrainState(step=jnp.zeros((), jnp.int32),
                     params={"student": variables["params"], "adapters": {}},
                     batch_stats=variables["batch_stats"], opt_state=None,
                     bad_step=jnp.full((), -1, jnp.int32))
  m = jax.jit(make_eval_step(student, classes, head))(
      state, {"image": images, "label": labels.astype(np.int32), "mask": mask}).compute()
  log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
  real = mask > 0
  assert float(m["loss"]) == pytest.approx(-log_p[np.arange(8), labels][real].mean(), rel=1e-5)
  assert float(m["accuracy"]) == pytest.approx(2 / 5)
  if classes > 5:
    assert float(m["top5"]) == pytest.approx(4 / 5)
  else:
    assert "top5" not in m


def _step(objectives_cfg, heads):
  mods, tvars = _teachers()
  student = _student(heads)
  objs = parsing.parse_objectives(objectives_cfg, list(TEACHERS), False)
  tx = builders.optimizer(builders.sgd(0.05), objs)
  state = builders.train_state(student, objs, tx,
                               teachers={n: (m, tvars[n]) for n, m in mods.items()})
  step = make_train_step(student, mods, objs, tx, False)
  batch = {"image": np.random.RandomState(0).randn(16, 8, 8, 1).astype(np.float32),
           "index": np.arange(16, dtype=np.int32)}
  return step, state, batch


def _convs(fn, *args) -> int:
  return builders.count_primitive(jax.make_jaxpr(fn)(*args).jaxpr, "conv_general_dilated")


def test_three_teachers_of_three_architectures_each_run_once_per_step(monkeypatch):
  monkeypatch.setenv("KD_JAX_CONV", "native")  # Convolutions as conv primitives, to count.
  mods, tvars = _teachers()
  teacher_convs = {n: _convs(lambda v, m=m: m.apply(v, X), tvars[n]) for n, m in mods.items()}
  assert all(teacher_convs.values())
  heads = tuple(TEACHERS)
  per_head = {f"kd_{t}": dict(loss="kd", teacher=t, temperature=1.0) for t in TEACHERS}
  step, state, batch = _step(per_head, heads)
  one_each = _convs(step, state, batch, jax.random.PRNGKey(0))
  more_readers = {**per_head, "union": dict(loss="soft_ce", teacher=["low", "high"]),
                  "l2": dict(loss="logit_l2", teacher="gen"),
                  "at": dict(loss="at", teacher="gen")}
  step2, state2, batch2 = _step(more_readers, heads)
  assert _convs(step2, state2, batch2, jax.random.PRNGKey(0)) == one_each
  student_only, state3, batch3 = _step({"kd_gen": per_head["kd_gen"]}, heads)
  # kd_gen alone runs only the generalist: adding the other two adds exactly their convs.
  base = _convs(student_only, state3, batch3, jax.random.PRNGKey(0))
  assert one_each == base + teacher_convs["low"] + teacher_convs["high"]


def test_a_step_with_cfl_over_three_teachers_trains_the_common_space():
  cfg = {f"kd_{t}": dict(loss="kd", teacher=t, temperature=1.0) for t in TEACHERS}
  cfg["cfl"] = dict(teacher=list(TEACHERS), weight=10.0, hidden=8)
  step, state, batch = _step(cfg, tuple(TEACHERS))
  new_state, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
  m = metrics.compute()
  assert np.isfinite(m["loss_cfl"]) and m["loss_cfl"] > 0
  assert set(state.params["adapters"]["cfl"]["cfl"]) >= {"align_s", "align_t0", "align_t1",
                                                     "align_t2", "dec2_conv1"}
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params["adapters"],
                       new_state.params["adapters"])
  assert all(jax.tree.leaves(moved))


def test_init_from_copies_every_layer_but_the_classifier():
  model = models.create("resnet8", 10)
  target = jax.device_get(dict(model.init(jax.random.PRNGKey(0), X)))
  source = jax.device_get(dict(models.create("resnet8", 3).init(jax.random.PRNGKey(1), X)))
  merged = ckpt_lib.merge_pretrained(target, source, "/runs/a")
  np.testing.assert_array_equal(merged["params"]["fc"]["Dense_0"]["kernel"],
                                target["params"]["fc"]["Dense_0"]["kernel"])
  for path, leaf in jax.tree_util.tree_leaves_with_path(merged):
    if "fc" not in jax.tree_util.keystr(path):
      want = source
      for k in path:
        want = want[k.key]
      np.testing.assert_array_equal(leaf, want)


def test_init_from_another_model_fails_in_one_line():
  target = jax.device_get(dict(models.create("resnet8", 10).init(jax.random.PRNGKey(0), X)))
  source = jax.device_get(dict(models.create("resnet14", 10).init(jax.random.PRNGKey(0), X)))
  with pytest.raises(KdJaxError, match=r"^config\.init_from: /runs/b does not hold this model: "):
    ckpt_lib.merge_pretrained(target, source, "/runs/b")


@pytest.fixture(scope="module")
def consolidated(tmp_path_factory):
  """A resnet8 student with heads for 'low' (5 classes) and 'high' (5), checkpointed as a
  consolidation run writes it (meta: heads)."""
  student = student_lib.create("resnet8", 10, {"low": 5, "high": 5})
  variables = student.init(jax.random.PRNGKey(3), jnp.zeros((1, 8, 8, 1)))
  path = str(tmp_path_factory.mktemp("consolidated"))
  ckpt_lib.save_model_variables(path, dict(variables), {"model": "resnet8", "num_classes": 10,
                                                        "heads": {"low": 5, "high": 5}})
  return student, variables, path


@pytest.mark.parametrize("head", ["", "high"])
def test_a_consolidated_student_loads_as_a_teacher(consolidated, head):
  student, variables, path = consolidated
  cfg = ml_collections.ConfigDict(dict(dtype="float32", teachers={"t": dict(
      model="resnet8", checkpoint=path, head=head)}))
  (module, loaded), = teachers_lib.load({"t": plan.plan_teacher("t", cfg.teachers.t)},
                                       (8, 8, 1)).values()
  x = jax.random.normal(jax.random.PRNGKey(4), (2, 8, 8, 1))
  logits, features = module.apply(loaded, x, train=False)
  want_logits, want_features = student.apply(variables, x, train=False)
  want = want_features["logits/high"] if head else want_logits
  # Equal up to float rounding: XLA's CPU convolutions may split work differently under load.
  np.testing.assert_allclose(np.asarray(logits), np.asarray(want), rtol=1e-6, atol=1e-7)
  assert logits.shape == (2, 5 if head else 10)
  np.testing.assert_allclose(np.asarray(features["logits/low"]),
                             np.asarray(want_features["logits/low"]), rtol=1e-6, atol=1e-7)


def test_a_head_the_consolidated_student_lacks_is_one_line(consolidated):
  cfg = ml_collections.ConfigDict(dict(dtype="float32", teachers={"t": dict(
      model="resnet8", checkpoint=consolidated[2], head="dogs")}))
  with pytest.raises(KdJaxError, match=r"^config\.teachers\.t\.head: the student in .* has no "
                     r"head 'dogs' \(its heads: low, high\)$"):
    plan.plan_teacher("t", cfg.teachers.t)
