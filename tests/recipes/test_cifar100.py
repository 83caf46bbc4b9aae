"""configs/cifar100: RepDistiller's recipes, each method of its table on resnet32x4 -> resnet8x4
(trained on mock CIFAR-100 with a stand-in teacher of the same feature shapes)."""
import math
import re

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from kd_jax import plan
from kd_jax import checkpoint as ckpt_lib
from kd_jax import config as config_lib
from kd_jax import methods, models, recipes
from kd_jax.training import loop
from tests.recipes.helpers import load_config

# The table: -r/-a/-b of each method (CE, KD, method loss).
REFERENCE_WEIGHTS = {
    "kd": {"ce": 0.1, "kd": 0.9}, "fitnet": {"ce": 1, "fitnet": 100}, "at": {"ce": 1, "at": 1000},
    "sp": {"ce": 1, "sp": 3000}, "cc": {"ce": 1, "cc": 0.02}, "vid": {"ce": 1, "vid": 1},
    "rkd": {"ce": 1, "rkd": 1}, "pkt": {"ce": 1, "pkt": 30000}, "ab": {"ce": 1, "ab": 1},
    "ft": {"ce": 1, "ft": 200}, "fsp": {"ce": 1, "fsp": 50}, "nst": {"ce": 1, "nst": 50},
    "crd": {"ce": 1, "crd": 0.8}, "crd_kd": {"ce": 1, "kd": 1, "crd": 0.8},
}
# Not in RepDistiller's table: feature-statistic transfer on its student recipe.
OTHER_WEIGHTS = {"adain": {"ce": 1, "adain": 1}, "srrl": {"ce": 1, "teacher_head": 1}}


@pytest.mark.parametrize("method", sorted(REFERENCE_WEIGHTS) + sorted(OTHER_WEIGHTS))
def test_method_config_has_the_reference_recipe(method):
  c = load_config(f"configs/cifar100/{method}.py")
  assert {k: v["weight"] for k, v in c.objectives.items()} == {**REFERENCE_WEIGHTS,
                                                               **OTHER_WEIGHTS}[method]
  assert (c.model, c.teachers.teacher.model) == ("resnet8x4", "resnet32x4")
  assert c.teachers.teacher.checkpoint == "workdirs/cifar100/teacher_resnet32x4"
  assert (c.num_epochs, c.batch_size, c.optimizer.lr, c.optimizer.momentum) == (240, 64, 0.05, 0.9)
  assert (c.optimizer.weight_decay, tuple(c.optimizer.decay_epochs)) == (5e-4, (150, 180, 210))
  assert c.data.name == "cifar100"
  config_lib.validate(c)


# The baselines of issue 37 on resnet32x4 -> resnet8x4: each objective as its authors set it
# (METHODS.md G; kd_jax/recipes/baselines.py names the files).
BASELINES = {
    "dist": {"ce": dict(weight=1.0), "dist": dict(weight=2.0, temperature=4.0)},
    "kd_ls": {"ce": dict(weight=0.1), "kd": dict(weight=9.0, temperature=2.0, logit_stand=True)},
    "dkd_ls": {"ce": dict(weight=1.0), "dkd": dict(weight=1.0, alpha=9.0, beta=72.0,
                                                   temperature=2.0, logit_stand=True)},
    "dkd": {"ce": dict(weight=1.0), "dkd": dict(weight=1.0, beta=8.0)},
    "ctkd": {"ce": dict(weight=0.1), "ctkd": dict(weight=0.9)},
    "ctkd_dkd": {"ce": dict(weight=1.0), "ctkd": dict(weight=1.0, base="dkd", alpha=1.0,
                                                      beta=2.0)},
    "ctkd_ls": {"ce": dict(weight=0.1), "ctkd": dict(weight=9.0, logit_stand=True)},
    "nkd": {"ce": dict(weight=1.0), "nkd": dict(weight=1.0, temperature=3.0, gamma=3.5)},
    "wttm": {"ce": dict(weight=1.0), "wttm": dict(weight=4.0, gamma=0.2)},
    "reviewkd": {"ce": dict(weight=1.0), "reviewkd": dict(weight=5.0)},
}
# MLKD: CE on each view, and its authors' solver (MLKD_SOLVER).
MLKD = {
    "mlkd": {"ce": dict(weight=0.1), "ce_strong": dict(loss="ce", weight=0.1, view="strong"),
             "mlkd": dict(weight=0.9)},
    "mlkd_ls": {"ce": dict(weight=0.1), "ce_strong": dict(loss="ce", weight=0.1, view="strong"),
                "mlkd": dict(weight=9.0, temperature=2.0, logit_stand=True)},
}
# (config, pair) -> (epochs, lr): Multi-Level-Logit-Distillation configs/cifar100/ours/*.yaml,
# logit-standardization-KD configs/cifar100/mlkd/*.yaml.
MLKD_SOLVER = {("mlkd", None): (240, 0.025), ("mlkd", "resnet32x4-ShuffleV1"): (960, 0.01),
               ("mlkd", "vgg13-MobileNetV2"): (480, 0.01), ("mlkd_ls", None): (480, 0.025),
               ("mlkd_ls", "vgg13-vgg8"): (480, 0.01),
               ("mlkd_ls", "resnet32x4-ShuffleV2"): (960, 0.01)}


@pytest.mark.parametrize("method,pair", sorted(MLKD_SOLVER, key=str))
def test_mlkd_configs_have_their_authors_solver_and_a_strong_view(method, pair):
  c = load_config(f"configs/cifar100/{method}.py", pair)
  assert (c.num_epochs, c.optimizer.lr) == MLKD_SOLVER[(method, pair)]
  assert (c.batch_size, tuple(c.optimizer.decay_epochs)) == (64, (150, 180, 210))
  if pair is None:
    assert c.objectives.to_dict() == MLKD[method]
  assert c.objectives.ce_strong.view == "strong"
  config_lib.validate(c)


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_logit_baseline_configs_have_their_authors_settings_on_the_reference_recipe(method):
  c = load_config(f"configs/cifar100/{method}.py")
  assert c.objectives.to_dict() == BASELINES[method]
  assert (c.model, c.teachers.teacher.model) == ("resnet8x4", "resnet32x4")
  assert (c.num_epochs, c.batch_size, c.optimizer.lr, c.optimizer.momentum) == (240, 64, 0.05, 0.9)
  assert (c.optimizer.weight_decay, tuple(c.optimizer.decay_epochs)) == (5e-4, (150, 180, 210))
  config_lib.validate(c)


@pytest.mark.parametrize("method,pair,want", [
    # logit-standardization logs: kd,resnet110,resnet20,4,12 and kd,ResNet50,MobileNetV2,3,1.
    ("kd_ls", "resnet110-resnet20", dict(weight=12.0, temperature=4.0, logit_stand=True)),
    ("kd_ls", "ResNet50-MobileNetV2", dict(weight=1.0, temperature=3.0, logit_stand=True)),
    # dkd,vgg13,vgg8,2,15,2.0: alpha 1 x 15, beta 2.0 x 15; dkd,resnet32x4,ShuffleV2,2,9:
    # mdistiller's beta (8) x 9.
    ("dkd_ls", "vgg13-vgg8", dict(weight=1.0, alpha=15.0, beta=30.0, temperature=2.0,
                                  logit_stand=True)),
    ("dkd_ls", "resnet32x4-ShuffleV2", dict(weight=1.0, alpha=9.0, beta=72.0, temperature=2.0,
                                            logit_stand=True)),
    ("dkd", "vgg13-MobileNetV2", dict(weight=1.0, beta=6.0)),
])
def test_per_pair_settings_follow_the_authors(method, pair, want):
  c = load_config(f"configs/cifar100/{method}.py", pair)
  assert c.objectives[method.split("_")[0]].to_dict() == want
  assert c.optimizer.lr == (0.01 if "MobileNetV2" in pair or "Shuffle" in pair else 0.05)


@pytest.mark.parametrize("teacher", recipes.CIFAR100_TEACHERS)
def test_teacher_configs_train_with_the_reference_recipe(teacher):
  c = load_config(f"configs/cifar100/teacher_{teacher}.py")
  assert c.model == teacher and c.num_epochs == 240 and c.optimizer.lr == 0.05
  assert c.objectives.to_dict() == {"ce": {"weight": 1.0}} and not c.teachers
  config_lib.validate(c)


@pytest.mark.parametrize("teacher,student", recipes.PAIRS)
def test_every_pair_of_the_tables_is_one_config_argument_away(teacher, student):
  c = load_config("configs/cifar100/crd_kd.py", f"{teacher}-{student}")
  assert (c.teachers.teacher.model, c.model) == (teacher, student)
  assert c.teachers.teacher.checkpoint == f"workdirs/cifar100/teacher_{teacher}"
  assert c.optimizer.lr == (0.01 if student in ("MobileNetV2", "ShuffleV1", "ShuffleV2") else 0.05)
  config_lib.validate(c)


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation)."""


# A random resnet8x4 teacher stands in for the recipes' resnet32x4: it has resnet32x4's output
# shapes at every point a method reads (stem, stages, pre-activations, pooled, logits) at a
# quarter of its depth, and a method sees nothing else of its teacher.
STAND_IN = "resnet8x4"


def _output_shapes(name: str):
  """The shapes of the logits and of every named feature ``name`` returns on 32x32 images."""
  model = models.create(name, 100)
  x = jax.numpy.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  outputs = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  return jax.tree.map(lambda a: a.shape, outputs)


def test_the_stand_in_teacher_has_the_recipe_teachers_feature_shapes():
  assert _output_shapes(STAND_IN) == _output_shapes("resnet32x4")


@pytest.fixture(scope="module")
def stand_in_teacher(tmp_path_factory):
  """A ``STAND_IN`` with 100 classes (random weights) saved as a kd_jax teacher checkpoint."""
  module = models.create(STAND_IN, 100)
  variables = models.init(module, jax.random.PRNGKey(0), (32, 32, 3))
  path = str(tmp_path_factory.mktemp("teacher"))
  ckpt_lib.save_model_variables(path, dict(variables), {"model": STAND_IN, "num_classes": 100})
  return path


def _last_report(out: str, step: int) -> dict[str, float]:
  """The ``step N: key=value, ...`` console line of the last report at ``step``."""
  lines = [l for l in out.splitlines() if re.search(rf"\bstep {step}: train/", l)]
  assert lines, out[-2000:]
  return {k: float(v) for k, v in re.findall(r"train/(\w+)=([-+.\w]+)", lines[-1])}


def _in_one_run(tables) -> dict:
  """The objectives of several recipes, ``(name, objectives)`` each, as one run's: CE once
  (weight 1), every other objective renamed ``<name>_<objective>`` with its settings."""
  return {"ce": dict(weight=1.0), **{
      f"{name}_{o}": dict(v, loss=v.get("loss", o))
      for name, table in tables for o, v in table.items() if o != "ce"}}


# The logit baselines read only logits: one run holds all of them (one compilation), MLKD's
# strong view (made once, read by both MLKD objectives and their CE) too.
ALL_BASELINES = _in_one_run([
    *((n, BASELINES[n]) for n in ("dist", "kd_ls", "dkd_ls", "ctkd", "ctkd_dkd", "nkd", "wttm")),
    *MLKD.items()])


# The recipes without an initialisation phase differ in their objectives alone: one run holds
# all of them, each objective as its recipe sets it (one compilation instead of 13: 19 s
# against 154 s of the suite's run, 2-core Zen 4). The recipes with a phase run one by one.
ONE_STAGE = ("kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "nst", "crd", "crd_kd",
             "adain", "srrl")
WITH_A_PHASE = ("ab", "ft", "fsp")


def test_each_recipe_trains_alone_or_in_the_one_stage_run():
  """ONE_STAGE holds every recipe of the tables without a phase, WITH_A_PHASE the others."""
  assert set(ONE_STAGE) | set(WITH_A_PHASE) == set(REFERENCE_WEIGHTS) | set(OTHER_WEIGHTS)
  has_phase = lambda m: any(methods.get(o.get("loss", k)).phase for k, o in
                            load_config(f"configs/cifar100/{m}.py").objectives.to_dict().items())
  assert [m for m in ONE_STAGE if has_phase(m)] == []
  assert all(has_phase(m) for m in WITH_A_PHASE)


@pytest.mark.slow
@pytest.mark.parametrize("method", [*WITH_A_PHASE, "function_matching", "logit_baselines",
                                    "one_stage", "reviewkd"])
def test_method_trains_three_steps_and_evaluates_on_mock_cifar100(method, stand_in_teacher,
                                                                  tmp_path, capsys, monkeypatch):
  """Every objective's loss finite at step 3 (and each phase's), and the student's classifier
  moved by its gradient: by more than 5 times what weight decay alone moves it in 3 steps."""
  from kd_jax.training import build
  initial = []  # Host copies of the run's initial state (the step donates the state).
  create = build.create_train_state

  def recording(*args, **kwargs):
    state = create(*args, **kwargs)
    initial.append(jax.device_get(state))
    return state
  monkeypatch.setattr(build, "create_train_state", recording)
  if method in ("logit_baselines", "one_stage"):
    c = load_config("configs/cifar100/kd.py")
    c.objectives = ALL_BASELINES if method == "logit_baselines" else _in_one_run(
        (m, load_config(f"configs/cifar100/{m}.py").objectives.to_dict()) for m in ONE_STAGE)
  else:
    c = load_config(f"configs/cifar100/{method}.py")
  c.teachers.teacher.update(model=STAND_IN, checkpoint=stand_in_teacher)
  c.batch_size, c.num_epochs, c.log_every_steps = 8, 1, 1
  c.data.num_train_examples, c.data.num_eval_examples = 24, 8  # 3 steps, 1 eval batch.
  for name, entry in c.objectives.items():
    if methods.get(entry.get("loss", name)).phase:
      entry["init_epochs"] = 1  # The stage: 3 steps too.
  config_lib.validate(c)
  with tfds.testing.mock_data(num_examples=24):
    results = loop.train_and_evaluate(plan.make_run(c, str(tmp_path)))
  out = capsys.readouterr().out
  report = _last_report(out, 3)
  main = results["objectives"]
  assert main and all(math.isfinite(report[f"loss_{name}"]) for name in main), report
  assert math.isfinite(report["loss"])
  for name in results["init_phases"]:
    stage_loss = re.findall(rf"init_{name} epoch 1/1: loss ([-+.\w]+)", out)
    assert stage_loss and math.isfinite(float(stage_loss[0])), out[-2000:]
  assert results["steps"] == 3 and 0.0 <= results["test_accuracy"] <= 1.0
  final, _ = ckpt_lib.load_model_variables(str(tmp_path))
  (fc,) = [k for k in final["params"] if models.is_classifier(k)]
  before, after = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(p[fc])]).astype(
      np.float64) for p in (initial[0].params["student"], final["params"]))
  assert (c.optimizer.name, c.optimizer.momentum) == ("sgd", 0.9)
  lr = c.optimizer.lr * c.batch_size / c.optimizer.lr_reference_batch
  decay_only = lr * c.optimizer.weight_decay * (1 + 1.9 + 2.71)  # SGD, momentum 0.9.
  assert np.abs(after - before).max() > 5 * decay_only * np.abs(before).max()
