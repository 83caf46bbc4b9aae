"""configs/digits: the RepDistiller methods and the scarce-label comparison on the embedded data."""
import pytest

from kd_jax import config as config_lib
from kd_jax import recipes
from tests.recipes.helpers import load_config


def _validate_job(c):
  runs = config_lib.expand_runs(c)
  names = list(runs)
  for i, (name, cfg) in enumerate(runs.items()):
    config_lib.validate(cfg, run_names=names[:i])
  return runs


@pytest.mark.parametrize("method", sorted(recipes.METHODS))
def test_every_method_is_a_teacher_then_student_job(method):
  runs = _validate_job(load_config("configs/digits/distill.py", method))
  assert list(runs) == ["teacher", method]
  assert runs[method].objectives.to_dict().keys() == recipes.METHODS[method].keys()
  assert runs[method].teachers.teacher.run == "teacher"


def test_a_pair_is_chosen_by_argument():
  runs = _validate_job(load_config("configs/digits/distill.py", "at,resnet32-resnet14"))
  assert (runs["teacher"].model, runs["at"].model) == ("resnet32", "resnet14")


def test_scarce_labels_job_shares_one_teacher_over_three_seeds():
  runs = _validate_job(load_config("configs/digits/scarce_labels.py"))
  assert runs["teacher"].data.labeled_fraction == 1.0
  students = [n for n in runs if n != "teacher"]
  assert sorted(students) == sorted(f"{m}_seed{s}" for m in ("scratch", "kd", "crd", "crd_uniform")
                                    for s in range(3))
  for name in students:
    assert runs[name].data.labeled_fraction == 0.1
    assert runs[name].seed == int(name[-1])
  assert not runs["scratch_seed0"].teachers and runs["kd_seed2"].teachers.teacher.run == "teacher"
  assert "mode" not in runs["crd_seed1"].objectives.crd  # The reference's default: exact.
  assert runs["crd_uniform_seed1"].objectives.crd.mode == "uniform"


def test_feature_statistics_job_compares_each_statistic_method_with_kd_over_three_seeds():
  runs = _validate_job(load_config("configs/digits/feature_statistics.py"))
  methods = ("kd", "mean_matching", "stat_matching", "adain", "srrl")
  assert sorted(runs) == sorted(["teacher"] + [f"{m}_seed{s}" for m in ("scratch",) + methods
                                               for s in range(3)])
  assert not runs["scratch_seed1"].teachers
  assert runs["adain_seed2"].objectives.to_dict() == {"ce": {"weight": 1.0},
                                                      "adain": {"weight": 1.0}}
  assert runs["srrl_seed0"].objectives.teacher_head.weight == 1.0
  assert all(runs[f"{m}_seed1"].teachers.teacher.run == "teacher" for m in methods)


def test_baselines_job_runs_every_logit_baseline_beside_scratch_kd_and_crd_over_three_seeds():
  c = load_config("configs/digits/baselines.py")
  runs = config_lib.validated_runs(c)
  methods = ("scratch", "kd", "crd") + recipes.DIGITS_BASELINES
  assert sorted(runs) == sorted(["teacher"] + [f"{m}_seed{s}" for m in methods for s in range(3)])
  assert runs["ctkd_dkd_seed2"].objectives.ctkd.base == "dkd" and runs["ctkd_dkd_seed2"].seed == 2
  assert runs["dist_seed0"].teachers.teacher.run == "teacher" and not runs["scratch_seed0"].teachers
  assert runs["crd_seed1"].objectives.crd.nce_k == 1024


def test_baselines_job_with_scarce_labels_leaves_out_the_methods_that_read_every_label():
  runs = config_lib.validated_runs(load_config("configs/digits/baselines.py", "0.1"))
  assert {n.rsplit("_seed", 1)[0] for n in runs} == {
      "teacher", "scratch", "kd", "crd", "dist", "kd_ls", "ctkd", "ctkd_ls", "wttm", "mlkd",
      "mlkd_ls", "reviewkd"}
  assert runs["wttm_seed0"].data.labeled_fraction == 0.1
  assert (runs["mlkd_seed1"].data.augment_on, runs["mlkd_seed1"].data.labeled_fraction) == (
      "device", 0.1)
  # MLKD's authors train at half RepDistiller's learning rate: so does the digits job.
  assert runs["mlkd_ls_seed0"].optimizer.lr == pytest.approx(0.025)
  assert runs["kd_seed0"].optimizer.lr == 0.05


def test_a_jobs_teacher_cache_applies_to_the_runs_that_read_teachers():
  c = load_config("configs/default.py")
  c.teacher_cache = "memory"
  runs = _validate_job(c)
  assert runs["kd_student"].teacher_cache == "memory"
  assert runs["teacher"].teacher_cache == "" and runs["scratch_student"].teacher_cache == ""
