"""The plan of a job (``kd_jax.plan``): whatever any run would refuse is refused before the
first run trains, in one line naming the run and the field, with nothing written; overrides
that no run reads are refused; a checkpoint written by an earlier kd_jax still resumes."""
import os
import shutil
import sys
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from kd_jax import job, plan, recipes
from kd_jax.data import sources
from kd_jax.errors import KdJaxError
from tests import forkserver
from tests.commands import REPO, assert_same_final_params, checkpoint_steps, train_command


def _digits_job(method: str = "kd") -> ml_collections.ConfigDict:
  """The digits job of ``method``: a teacher run, then the student run (the last one)."""
  c = recipes.digits_distill(method)
  c.num_epochs = 1
  return c


def _fitnet_lacking_a_feature(c):
  c.runs.fitnet.objectives.fitnet.student_feature = "stage9"


def _unlabelled_crd(c):
  c.runs.crd.data = {"unlabeled": True}
  c.runs.crd.objectives = {"crd": {"weight": 1.0}}


LAST_RUN_MISTAKES = {
    "unknown objective": ("kd", lambda c: c.runs.kd.objectives.update(
        {"kdd": dict(weight=0.9)}),
        r"^\[kd\] config\.objectives\.kdd: unknown loss 'kdd'; valid: .*"),
    "teacher naming no run": ("kd", lambda c: c.runs.kd.teachers.teacher.update(run="nope"),
                              r"^\[kd\] config\.teachers\.teacher\.run: 'nope' is not an earlier "
                              r"run of this config \(runs: .*\)$"),
    "teacher checkpoint not there": (
        "kd", lambda c: setattr(c.runs.kd, "teachers", {"teacher": dict(
            model="resnet20", checkpoint="/nonexistent/teacher")}),
        r"^\[kd\] config\.teachers\.teacher\.checkpoint: no kd_jax checkpoint in "
        r"/nonexistent/teacher .*"),
    "feature the student lacks": ("fitnet", _fitnet_lacking_a_feature,
                                  r"^\[fitnet\] config\.objectives\.fitnet\.student_feature: the "
                                  r"model has no feature 'stage9'; it has .*"),
    "CRD exact negatives on unlabelled data": (
        "crd", _unlabelled_crd,
        r"^\[crd\] config\.objectives\.crd: mode='exact' draws negatives from the other "
        r"classes, but the training data is unlabelled; set mode='uniform'$"),
    "split that does not exist": (
        "kd", lambda c: setattr(c.runs.kd, "data", {"train_split": "trian"}),
        r"^\[kd\] config\.data\.train_split: data set 'sklearn_digits' has no split 'trian' "
        r"\(splits: .*\)\.$"),
    "ReviewKD levels that do not pair": (
        "reviewkd", lambda c: c.runs.reviewkd.objectives.reviewkd.update(student_feature="stages"),
        r"^\[reviewkd\] config\.objectives\.reviewkd: loss 'reviewkd' cannot compare student "
        r"features .*: reviewkd pairs the student's and the teacher's levels one to one; it reads "
        r"3 student and 4 teacher maps$"),
    "hyperparameter of the wrong type": (
        "kd", lambda c: c.runs.kd.objectives.kd.update(temperature="4"),
        r"^\[kd\] config\.objectives\.kd\.temperature must be a float like its default 4\.0, "
        r"got '4'$"),
}


@pytest.mark.parametrize("mistake", list(LAST_RUN_MISTAKES))
def test_a_mistake_in_the_last_run_is_refused_before_the_first_run_trains(mistake, tmp_path):
  method, mistake_in, message = LAST_RUN_MISTAKES[mistake]
  config = _digits_job(method)
  mistake_in(config)
  workdir = tmp_path / "w"
  t0 = time.perf_counter()
  with pytest.raises(KdJaxError, match=message) as err:
    job.run(config, str(workdir))
  assert time.perf_counter() - t0 < 10
  assert "\n" not in str(err.value)
  assert not workdir.exists()


def test_the_command_refuses_the_last_runs_mistake_in_one_line_and_writes_nothing(tmp_path):
  sources.prepare_local(recipes.digits_base("resnet8").data)  # Its one line, if not yet.
  config = tmp_path / "job.py"
  config.write_text("from kd_jax import recipes\n\n\ndef get_config():\n"
                    "  c = recipes.digits_distill('kd')\n"
                    "  c.runs.kd.objectives.kdd = dict(weight=0.9)\n"
                    "  return c\n")
  workdir = tmp_path / "w"
  proc = forkserver.run(train_command(workdir, config=str(config)), cwd=REPO,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 1 and proc.stdout == ""
  assert proc.stderr.startswith("kd_jax: error: [kd] config.objectives.kdd: unknown loss 'kdd'")
  assert len(proc.stderr.strip().splitlines()) == 1
  assert not workdir.exists()


def test_a_top_level_override_that_every_run_sets_is_refused_in_one_line(tmp_path):
  workdir = tmp_path / "w"
  proc = forkserver.run([sys.executable, "-m", "kd_jax.train", f"--workdir={workdir}",
                         "--config.model=resnet9", "--dry_run"],
                        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 1 and proc.stdout == ""
  assert proc.stderr.strip() == (
      "kd_jax: error: --config.model: no run of this job reads it: every run sets model itself "
      "(kd_student, scratch_student, teacher); override one run's: "
      "--config.runs.kd_student.model=...")
  assert not workdir.exists()


def test_an_override_of_one_run_reaches_that_run_only_and_the_dry_run_writes_nothing(tmp_path):
  workdir = tmp_path / "w"
  proc = forkserver.run([sys.executable, "-m", "kd_jax.train", f"--workdir={workdir}",
                         "--config.runs.kd_student.model=resnet14", "--config.num_epochs=2",
                         "--dry_run"],
                        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
  trains = {l.split("]")[0][1:]: l.split()[2].rstrip(",") for l in proc.stdout.splitlines()
            if l.startswith("[") and " trains " in l}
  assert trains == {"teacher": "resnet20", "kd_student": "resnet14",
                    "scratch_student": "resnet8"}
  estimates = [l for l in proc.stdout.splitlines() if " estimate: " in l]
  assert [l.split("]")[0][1:] for l in estimates] == ["teacher", "kd_student", "scratch_student"]
  assert all(" ms/step x 44 steps = " in l for l in estimates)
  assert not workdir.exists()


@pytest.mark.parametrize("overrides,refused", [
    (["num_epochs"], False),            # No run sets it: every run reads the top level.
    (["optimizer.lr"], False),          # One run keeps the top-level optimizer.
    (["objectives.kd.temperature"], True),  # Every run replaces the objectives whole.
    (["runs.b.model"], False),
])
def test_an_override_is_refused_only_where_every_run_sets_it(overrides, refused):
  config = ml_collections.ConfigDict({"model": "resnet8", "runs": {
      "a": {"model": "resnet20", "objectives": {"ce": {}}},
      "b": {"model": "resnet8", "objectives": {"ce": {}}, "optimizer": {"lr": 0.1}}}})
  if refused:
    with pytest.raises(KdJaxError, match=r"^--config\.objectives\.kd\.temperature: no run of "
                                         r"this job reads it: every run sets "
                                         r"objectives\.kd\.temperature itself \(a, b\)"):
      plan.check_overrides(config, overrides)
  else:
    plan.check_overrides(config, overrides)


def test_runs_with_the_same_step_share_one_key_and_differ_from_others():
  runs = plan.make(recipes.digits_scarce_labels(seeds=2), "/nonexistent").runs
  assert runs["kd_seed0"].step_key() == runs["kd_seed1"].step_key()
  assert runs["kd_seed0"].step_key() != runs["crd_seed0"].step_key()


def test_a_run_plan_holds_its_adapter_shapes():
  crd = plan.make(_digits_job("crd"), "/nonexistent").runs["crd"]
  assert crd.teachers["teacher"].run == "teacher" and crd.teachers["teacher"].num_classes == 10
  assert crd.adapter_shapes["crd"]["embed_s"]["linear"]["Dense_0"]["kernel"].shape == (64, 128)
  assert crd.state_shapes["crd"]["memory"].student.shape == (1437, 128)


FIXTURE = os.path.join(REPO, "tests", "fixtures", "checkpoints_e5517ae")
FITNET = """
from kd_jax import recipes

def get_config():
  c = recipes.digits_base("resnet8")
  c.data.num_train_examples = 128
  c.batch_size = 64
  c.num_epochs = 2
  c.keep_checkpoints = 1
  c.optimizer.schedule = "constant"
  c.teachers = {{"teacher": dict(model="resnet8", checkpoint="{teacher}")}}
  c.objectives = {{"ce": dict(weight=1.0), "fitnet": dict(weight=100.0, student_feature="stage2",
                                                        teacher_feature="stage2")}}
  return c
"""


def _student_at(workdir, step: int) -> list[np.ndarray]:
  """The student's parameters and BatchNorm statistics in checkpoint ``step`` of a run
  (read as stored: format 2 and today's name them alike)."""
  tree = ocp.PyTreeCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return [np.asarray(a) for a in jax.tree.leaves((tree["params"]["student"],
                                                  tree["batch_stats"]))]


def _largest_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_a_checkpoint_written_by_main_at_e5517ae_resumes_as_an_uninterrupted_run(tmp_path):
  """The fixture: a FitNet student after epoch 1 and its teacher, written by main at
  e5517ae with the config above and num_epochs=1 (checkpoint format 2: the adapter in
  params['aux'], aux_state, meta 'stage'/'stages'/'aux'), resumed under today's names.

  Bit-identical to a fresh run of both epochs where this CPU computes epoch 1 bit for bit
  as the fixture's writer did (the Zen 4 VMs). Where it rounds epoch 1 otherwise (a Zen 1:
  1.6e-7 apart at most), epoch 2 starts from other last bits, so the ends are compared to
  rounding: at most 100x the starts' difference (3.8x on that Zen 1). A checkpoint read
  wrong is far off: with the momentum lost 0.50, with the FitNet adapter initialised anew
  0.17."""
  shutil.copytree(FIXTURE, tmp_path / "fixture")
  config = tmp_path / "fitnet.py"
  config.write_text(FITNET.format(teacher=tmp_path / "fixture" / "teacher"))
  resumed, fresh = tmp_path / "fixture" / "student", tmp_path / "fresh"
  assert checkpoint_steps(resumed) == [2]
  outputs = []
  for workdir, overrides in ((resumed, ()), (fresh, ("--config.keep_checkpoints=2",))):
    proc = forkserver.run(train_command(workdir, *overrides, config=str(config)), cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs.append(proc.stdout)
  assert "resuming from the checkpoint at step 2 (epoch 2, batch 0)" in outputs[0]
  assert "resuming" not in outputs[1]
  assert checkpoint_steps(resumed) == [4] and checkpoint_steps(fresh) == [2, 4]
  starts = _largest_difference(_student_at(os.path.join(FIXTURE, "student"), 2),
                               _student_at(fresh, 2))
  if starts == 0:
    assert_same_final_params(resumed, fresh)
  else:
    assert _largest_difference(_student_at(resumed, 4), _student_at(fresh, 4)) <= 100 * starts


def test_a_later_runs_checkpoint_of_another_model_is_refused_before_the_first_run_trains(
    tmp_path):
  """The fixture's student (a resnet8) sits in the workdir of the job's last run, which now
  trains a resnet14: refused at the plan, the teacher run untrained."""
  config = _digits_job("kd")
  config.runs.kd.model = "resnet14"
  shutil.copytree(os.path.join(FIXTURE, "student"), tmp_path / "w" / "kd")
  with pytest.raises(KdJaxError, match=r"^\[kd\] workdir .*/w/kd holds a checkpoint \(step 2\) "
                                       r"with model='resnet8', but this config has "
                                       r"model='resnet14'; use another --workdir"):
    job.run(config, str(tmp_path / "w"))
  assert sorted(os.listdir(tmp_path / "w")) == ["kd"]


# --- Models read from checkpoints and from earlier runs (teachers, init_from, a downstream
# backbone): a model that the run would refuse at its start is refused by the plan.

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """Untrained checkpoints: a resnet8 for 10 classes of 8x8 RGB images (digits are grey) and
  a resnet14 for 8x8 grey ones."""
  import jax
  from kd_jax import checkpoint as ckpt_lib
  from kd_jax import models
  root = tmp_path_factory.mktemp("checkpoints")
  out = {}
  for name, model, shape in (("rgb_resnet8", "resnet8", (8, 8, 3)),
                             ("grey_resnet14", "resnet14", (8, 8, 1))):
    variables = models.init(models.create(model, 10), jax.random.PRNGKey(0), shape)
    out[name] = str(root / name)
    ckpt_lib.save_model_variables(out[name], dict(variables), {"model": model, "num_classes": 10})
  return out


def _as_teacher(path, **spec):
  return lambda c: setattr(c.runs.kd, "teachers", {"teacher": {
      "model": "resnet8", "checkpoint": path, **spec}})


def _probing(path):
  """A run that evaluates the model in ``path`` (trains nothing) on the transposed digits."""
  def change(c):
    c.runs.probe = dict(downstream=dict(data=dict(name="sklearn_digits_transposed"),
                                        backbone=path, protocols=("linear_probe",)))
  return change


# mistake -> (what it changes given the checkpoints, the one line expected)
MODEL_MISTAKES = {
    "teacher checkpoint for RGB images": (
        lambda p: _as_teacher(p["rgb_resnet8"]),
        r"^\[kd\] config\.teachers\.teacher: the variables in .*/rgb_resnet8 do not fit a "
        r"resnet8 with 10 classes on 8x8x1 images$"),
    "teacher checkpoint with other classes": (
        lambda p: _as_teacher(p["grey_resnet14"], model="resnet14", num_classes=5),
        r"^\[kd\] config\.teachers\.teacher: the variables in .*/grey_resnet14 do not fit a "
        r"resnet14 with 5 classes on 8x8x1 images$"),
    "init_from a model for RGB images": (
        lambda p: lambda c: c.runs.kd.update(init_from=p["rgb_resnet8"]),
        r"^\[kd\] config\.init_from: .*/rgb_resnet8 does not hold this model on 8x8x1 images: "
        r"params/\w+/kernel is \(3, 3, 3, 16\), expected \(3, 3, 1, 16\)$"),
    "init_from another model": (
        lambda p: lambda c: c.runs.kd.update(init_from=p["grey_resnet14"]),
        r"^\[kd\] config\.init_from: .*/grey_resnet14 holds a 'resnet14', this run trains a "
        r"'resnet8'$"),
    "init_from a workdir without a checkpoint": (
        lambda p: lambda c: c.runs.kd.update(init_from=os.path.dirname(p["rgb_resnet8"])),
        r"^\[kd\] config\.init_from: no kd_jax checkpoint in .*"),
    "downstream backbone for RGB images": (
        lambda p: _probing(p["rgb_resnet8"]),
        r"^\[probe\] config\.downstream\.data: the resnet8 of .*/rgb_resnet8 cannot take "
        r"sklearn_digits_transposed's 8x8x1 images: params/\w+/kernel is \(3, 3, 3, 16\), "
        r"expected \(3, 3, 1, 16\)$"),
    "downstream backbone without a checkpoint": (
        lambda p: _probing("/nonexistent/run"),
        r"^\[probe\] config\.downstream\.backbone: no kd_jax checkpoint in /nonexistent/run .*"),
}


@pytest.mark.parametrize("mistake", list(MODEL_MISTAKES))
def test_a_model_the_last_run_cannot_take_is_refused_before_the_first_run_trains(
    mistake, checkpoints, tmp_path, monkeypatch):
  from kd_jax.evaluation import downstream
  change, message = MODEL_MISTAKES[mistake]
  config = _digits_job("kd")
  change(checkpoints)(config)
  workdir = tmp_path / "w"
  for module, name in ((job, "train_and_evaluate"), (downstream, "evaluate")):
    monkeypatch.setattr(module, name, lambda *_, **__: pytest.fail("a run started"))
  with pytest.raises(KdJaxError, match=message) as err:
    job.run(config, str(workdir))
  assert "\n" not in str(err.value)
  assert not workdir.exists()


def test_the_dry_runs_plan_lists_a_model_workdir_not_there_as_a_problem(tmp_path):
  """Where the plan allows what this machine lacks (the dry run), a workdir read by init_from
  or as a downstream backbone that is not there is a problem, not a refusal."""
  config = _digits_job("kd")
  config.runs.kd.init_from = "/nonexistent/generalist"
  _probing(str(tmp_path))(config)  # A folder, without a checkpoint.
  job_plan = plan.make(config, str(tmp_path / "w"), missing=True)
  assert job_plan.problems == (
      "[kd] config.init_from: '/nonexistent/generalist' is neither a run of this job nor a "
      "workdir that exists",
      f"[probe] config.downstream.backbone: no kd_jax checkpoint in {tmp_path}")
  with pytest.raises(KdJaxError, match=r"^\[kd\] config\.init_from: '/nonexistent/generalist' "):
    plan.make(config, str(tmp_path / "w"))


def test_a_run_reading_a_later_named_run_with_init_from_trains_after_it(tmp_path):
  """Runs are ordered by the models they read: ``a`` starts from ``z``, so ``z`` goes first
  (the plan of ``a`` then reads ``z``'s model)."""
  from kd_jax import config as config_lib
  c = recipes.digits_base()
  c.runs = {"a": dict(init_from="z"), "z": dict()}
  assert list(config_lib.expand_runs(c)) == ["z", "a"]
  assert plan.make(c, str(tmp_path / "w")).runs["a"].config.init_from == "z"


def test_evaluate_refuses_a_workdir_without_a_checkpoint_before_reading_the_data(
    tmp_path, monkeypatch):
  c = recipes.digits_base()
  recipes.digits_downstream(c)

  def prepare(_):
    raise AssertionError("the data set was prepared")
  monkeypatch.setattr(sources, "prepare_local", prepare)
  with pytest.raises(KdJaxError, match=r"^--workdir: no kd_jax checkpoint in .*/empty "):
    plan.make_downstream(c, str(tmp_path / "empty"))


def test_evaluate_fine_tunes_the_model_in_the_workdir_not_config_model(checkpoints):
  c = recipes.digits_base("resnet8")
  recipes.digits_downstream(c)
  finetune = plan.make_downstream(c, checkpoints["grey_resnet14"])
  assert finetune.config.model == "resnet14"


def test_the_plans_fine_tuning_run_starts_from_the_backbone_the_job_fine_tunes(tmp_path):
  """The downstream fine-tuning run the plan checks is the one the job trains (from the
  run's own student, or another run's), so that a finished one is compared with it; its
  config.json names that backbone by its place in the job, so a moved job resumes."""
  c = recipes.digits_base()
  recipes.digits_downstream(c)
  c.runs = {"student": {}, "student_eval": dict(downstream=dict(backbone="student"))}
  runs = plan.make(c, str(tmp_path / "job")).runs
  moved = plan.make(c, str(tmp_path / "moved")).runs
  for name in ("student", "student_eval"):
    assert runs[name].downstream.config.init_from == str(tmp_path / "job" / "student")
    assert runs[name].downstream.trained_config() == moved[name].downstream.trained_config()
  # The run's own student holds its fine-tuning run's folder; the other's lies in the job.
  assert runs["student"].downstream.trained_config()["init_from"] == "../../.."
  assert runs["student_eval"].downstream.trained_config()["init_from"] == "student"


@pytest.mark.parametrize("run,which", [("student", "latest"), ("student", "best"),
                                       ("teacher", "best"), ("teacher", "latest")])
def test_the_variable_shapes_read_from_a_checkpoints_metadata_are_those_it_loads(
    run, which, monkeypatch):
  """What the plan checks (metadata only) is what a run reads: a train state's student
  (latest) or a saved model (best), of the e5517ae fixture, named by a relative path (as
  init_from's often are: orbax reads absolute ones only)."""
  import jax
  from kd_jax import checkpoint as ckpt_lib
  monkeypatch.chdir(REPO)
  path = os.path.relpath(os.path.join(FIXTURE, run), REPO)
  shapes, meta = ckpt_lib.model_variable_shapes(path, which)
  variables, loaded_meta = ckpt_lib.load_model_variables(path, which)
  assert meta == loaded_meta
  as_shapes = lambda tree: jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), tree)
  assert as_shapes(shapes) == as_shapes(variables)
  assert jax.tree.leaves(shapes)


def test_a_finished_run_trained_with_another_config_is_refused_and_a_resumed_one_says_so(
    tmp_path, tiny_config, capsys):
  """Each run writes config.json (objectives and teachers resolved). A job's finished run is
  not trained again, so it must have trained this config: other logging, or a hyperparameter
  set to its default, is the same run; another hyperparameter, or more epochs, is refused.
  A run resumed with another config (a lower learning rate, say) goes on and says so."""
  import json
  workdir = str(tmp_path / "w")
  job_config = lambda **kw: tiny_config(**kw, runs={"a": {}})
  job.run(job_config(), workdir)
  saved = json.load(open(os.path.join(workdir, "a", "config.json")))
  assert saved["objectives"]["ce"] == {
      "loss": "ce", "weight": 1.0, "teacher": None, "student_feature": None,
      "teacher_feature": None, "init_epochs": 0, "init_lr": None, "main_phase": True,
      "view": "", "label_smoothing": 0.0}
  same = job_config(log_every_steps=7, keep_checkpoints=1)
  same.objectives.ce.label_smoothing = 0.0
  plan.make(same, workdir)
  other = job_config()
  other.objectives.ce.label_smoothing = 0.1
  with pytest.raises(KdJaxError, match=(
      rf"^\[a\] workdir {workdir}/a holds a finished run trained with another config "
      r"\(objectives\.ce\.label_smoothing: 0\.0 -> 0\.1\): use another --workdir \(or remove "
      r"that one to train this config there\)$")):
    plan.make(other, workdir)
  with pytest.raises(KdJaxError, match=r"another config \(num_epochs: 2 -> 3\)"):
    plan.make(job_config(num_epochs=3), workdir)
  os.remove(os.path.join(workdir, "a", "results.json"))  # As if stopped after its last save.
  capsys.readouterr()
  job.run(job_config(num_epochs=3, **{"optimizer.lr": 0.01}), workdir)
  assert ("[a] resumed with another config than the run was trained with so far: "
          "optimizer.lr: 0.05 -> 0.01") in capsys.readouterr().out
