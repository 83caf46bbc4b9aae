"""Seeds side by side (``config.seeds``, ``kd_jax/training/seeds.py``): seed k of a run of
several seeds trains as a run of seed k alone, the teachers run once for all seeds in shared
mode, and what cannot be trained side by side is refused before anything trains."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import config as config_lib
from kd_jax import models
from kd_jax import plan as plan_lib
from kd_jax.distill import parsing
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from kd_jax.training import build, sharding
from kd_jax.training import seeds as seeds_lib
from tests import builders
from tests.training import seeds_exactness


# --- Exactness: 20 steps of KD, CRD and AB (an initialisation phase), the losses of every step
# and the final state (parameters, BatchNorm statistics, CRD's memory).

def test_seed_k_of_three_trains_as_seed_k_alone(tmp_path, fast_compilation):
  """Seed 1 of seeds (0, 1, 2), shared batches (those of config.seed = 1) and independent
  batches, the students one after the other (seed_compute loop, CPU's default), against a
  run of seed 1 without seeds (each seed computes at a lone seed's shapes: bit-equal on
  the CPUs measured, docs/seeds.md; asserted to 1e-5, the bound the vmapped step keeps)."""
  seeds_exactness.check(seeds_exactness.comparisons(str(tmp_path), ("loop",)), "loop")


# --- Teachers once.

def _teacher_convs(mode: str, how: str):
  """``(convolutions applying a teacher kernel once to one batch of 16, to the 3 seeds' 48,
  to a batch of 16 once per seed (in the loop over the seeds), how many the teacher's forward
  has)`` in the jaxpr of a KD step of 3 seeds."""
  student, teacher = models.create("resnet8", 10), models.create("vgg8", 10)
  x = jnp.zeros((16, 8, 8, 1))
  tv = teacher.init(jax.random.PRNGKey(1), x[:1])
  objs = parsing.parse_objectives({"ce": {}, "kd": {}}, ["t"], True)
  tx = builders.optimizer(builders.sgd(0.05), objs)
  repl = sharding.replicated(sharding.data_mesh())
  state = build.create_train_state(student, {"t": teacher}, {"t": tv}, objs, tx, (8, 8, 1), 16,
                                   0, repl, seeds=(0, 1, 2))
  step = seeds_lib.seeded_step(make_train_step(student, {"t": teacher}, objs, tx, True), mode,
                               jax.random.PRNGKey(1), how)
  batch = {"image": x, "label": jnp.zeros((16,), jnp.int32)}
  if mode == "independent":
    batch = {k: jnp.stack([v] * 3) for k, v in batch.items()}
  kernels = {tuple(k.shape) for k in jax.tree.leaves(tv["params"]) if k.ndim == 4}
  own = {tuple(k.shape) for k in jax.tree.leaves(state.params["student"]) if k.ndim == 5}
  assert not kernels & {s[1:] for s in own}  # The teacher's kernels are its own shapes.
  convs = []

  def walk(jaxpr, per_seed=False):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        lhs, rhs = (v.aval.shape for v in eqn.invars)
        if tuple(rhs) in kernels:
          convs.append((lhs[0], per_seed))
      for sub in jax.core.jaxprs_in_params(eqn.params):  # lax.map: a scan over the seeds.
        walk(sub, per_seed or eqn.primitive.name in ("scan", "while"))

  walk(jax.make_jaxpr(step)(state, batch, seeds_lib.keys((0, 1, 2), 1)).jaxpr)
  forward = builders.count_primitive(jax.make_jaxpr(
      lambda v, x: teacher.apply(v, x, train=False))(tv, x).jaxpr, "conv_general_dilated")
  return convs.count((16, False)), convs.count((48, False)), convs.count((16, True)), forward


@pytest.mark.parametrize("how", ["vmap", "loop"])
def test_shared_batches_run_the_teacher_once_for_all_seeds(monkeypatch, how):
  monkeypatch.setenv("KD_JAX_CONV", "native")  # Convolutions as conv primitives, to count.
  once, stacked, per_seed, forward = _teacher_convs("shared", how)
  assert forward > 0 and (once, stacked, per_seed) == (forward, 0, 0)


@pytest.mark.parametrize("how", ["vmap", "loop"])
def test_independent_batches_run_the_teacher_on_each_seeds_batch(monkeypatch, how):
  monkeypatch.setenv("KD_JAX_CONV", "native")
  once, stacked, per_seed, forward = _teacher_convs("independent", how)
  assert forward > 0 and (once, stacked, per_seed) == ((0, forward, 0) if how == "vmap" else
                                                       (0, 0, forward))


# --- The state and the names of its outputs.

def test_seed_k_of_the_state_is_the_state_of_seed_k():
  student = models.create("resnet8", 10)
  objs = parsing.parse_objectives({"ce": {}}, [], True)
  tx = builders.optimizer(builders.sgd(0.05), objs)
  repl = sharding.replicated(sharding.data_mesh())
  three = build.create_train_state(student, {}, {}, objs, tx, (8, 8, 1), 16, 0, repl,
                                   seeds=(4, 0, 7))
  alone = build.create_train_state(student, {}, {}, objs, tx, (8, 8, 1), 16, 7, repl)
  assert three.step.shape == () and three.bad_step.shape == (3,)
  got = jax.tree.leaves(seeds_lib.take(three.params, 2))
  for a, b in zip(got, jax.tree.leaves(alone.params), strict=True):
    np.testing.assert_array_equal(a, b)


def test_each_seed_is_written_as_a_run_named_after_it(tmp_path):
  c = builders.make_tiny_config()
  c.runs = {"kd": dict(seeds=(0, 2)), "solo": dict(seeds=(5,))}
  job = plan_lib.make(c, str(tmp_path))
  assert job.runs["kd"].seed_workdirs() == {0: str(tmp_path / "kd_seed0"),
                                            2: str(tmp_path / "kd_seed2")}
  single = plan_lib.make(builders.make_tiny_config(seeds=(1, 3)), str(tmp_path / "one"))
  assert single.runs[""].seed_workdirs() == {1: str(tmp_path / "one" / "seed1"),
                                             3: str(tmp_path / "one" / "seed3")}
  assert config_lib.run_names(config_lib.expand_runs(c)) == ["kd_seed0", "kd_seed2",
                                                             "solo_seed5"]


def test_a_later_run_reads_one_seed_as_its_teacher(tmp_path):
  c = builders.make_tiny_config()
  c.runs = {"teacher": dict(seeds=(0, 1)),
            "student": dict(teachers={"t": dict(model="resnet8", run="teacher_seed1")},
                            objectives={"kd": {}})}
  job = plan_lib.make(c, str(tmp_path))
  assert job.runs["student"].teachers["t"].path == str(tmp_path / "teacher_seed1")


@pytest.mark.parametrize("fields,message", [
    (dict(seeds=(0, 0)), r"^config\.seeds must be a list of distinct integers >= 0"),
    (dict(seeds=(0, 1), seed_batches="mixed"), r"^config\.seed_batches must be shared or "
     r"independent, got 'mixed'$"),
    (dict(seeds=(0, 1), seed_compute="pmap"), r"^config\.seed_compute must be auto, vmap or "
     r"loop, got 'pmap'$"),
    (dict(seeds=(0, 1), teacher_cache="memory"), r"^config\.seeds: a run of several seeds "
     r"takes no config\.teacher_cache \('memory'\): the teachers' cached outputs"),
    (dict(seeds=(0, 1), init_from="/tmp/x"), r"^config\.seeds: a run of several seeds takes "
     r"no config\.init_from"),
])
def test_what_seeds_cannot_do_is_refused_in_one_line(fields, message):
  with pytest.raises(KdJaxError, match=message):
    config_lib.validate(builders.make_tiny_config(**fields))


def test_a_teacher_run_of_seeds_must_be_named_by_its_seed(tmp_path):
  c = builders.make_tiny_config()
  c.runs = {"teacher": dict(seeds=(0, 1)),
            "student": dict(teachers={"t": dict(model="resnet8", run="teacher")},
                            objectives={"kd": {}})}
  with pytest.raises(KdJaxError, match=r"^\[student\] config\.teachers\.t\.run: 'teacher' is "
                     r"not an earlier run of this config \(runs: teacher_seed0, teacher_seed1\)"):
    plan_lib.make(c, str(tmp_path))


def test_a_run_named_like_a_seed_of_another_is_refused(tmp_path):
  c = builders.make_tiny_config()
  c.runs = {"kd": dict(seeds=(0, 1)), "kd_seed1": dict()}
  with pytest.raises(KdJaxError, match=r"^config\.runs: kd_seed1 is both a run and a seed"):
    plan_lib.make(c, str(tmp_path))


def test_a_jobs_runs_of_seeds_become_one_run_side_by_side_where_they_can():
  c = builders.make_tiny_config(side_by_side="independent")
  t = {"t": dict(model="resnet8", run="teacher")}
  c.runs = {"teacher": dict(),
            **{f"kd_seed{k}": dict(seed=k, teachers=t, objectives={"kd": {}}) for k in range(3)},
            # Not alike (another weight for seed 1): trained one by one.
            **{f"at_seed{k}": dict(seed=k, teachers=t, objectives={"at": {"weight": 1.0 + k}})
               for k in range(2)},
            # Read by a later run's init_from: one by one.
            **{f"ce_seed{k}": dict(seed=k) for k in range(2)},
            "tuned": dict(init_from="ce_seed0")}
  runs = config_lib.expand_runs(c)
  assert sorted(runs) == ["at_seed0", "at_seed1", "ce_seed0", "ce_seed1", "kd", "teacher",
                          "tuned"]
  assert runs["kd"].seeds == (0, 1, 2) and runs["kd"].seed_batches == "independent"
  assert config_lib.run_names(runs).count("kd_seed1") == 1


def test_the_dry_run_says_how_the_seeds_are_trained(tmp_path):
  from kd_jax import dry_run
  lines = []
  c = builders.make_tiny_config(seeds=(0, 2))
  dry_run.describe(c, str(tmp_path), measure=False, print_fn=lines.append)
  assert (f"[train] trains resnet8, seeds 0, 2 side by side (one step for all; shared batches: "
          f"those of seed 0; students one after the other (seed_compute auto)), written to "
          f"{tmp_path}/seed0, {tmp_path}/seed2, batch 32, "
          f"2 epochs = 4 steps (2 per epoch)") in lines[1]


def test_the_seeds_pages_run_plans_as_written(tmp_path):
  from tests.test_readme import python_blocks  # pylint: disable=g-import-not-at-top
  (block,) = python_blocks("docs/seeds.md")
  c = builders.make_tiny_config()
  c.runs = {"teacher": dict()}
  exec(block, {"c": c})  # pylint: disable=exec-used
  job = plan_lib.make(c, str(tmp_path))
  kd = job.runs["kd"]
  assert (kd.seeds, kd.config.seed_batches, list(kd.teachers)) == ((0, 1, 2), "shared",
                                                                   ["teacher"])
