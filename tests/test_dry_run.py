"""``kd_jax.train --dry_run``: the resolved job, every hyperparameter, an estimate; no writes."""
import pytest

from kd_jax import dry_run
from kd_jax.errors import KdJaxError
from tests.recipes.helpers import load_config


def _describe(path):
  return _describe_config(load_config(*path.split(":")))


def _describe_config(config):
  lines = []
  out = dry_run.describe(config, "/nonexistent/w", measure=False, print_fn=lines.append)
  return lines, out


def test_each_run_is_listed_in_order_with_its_steps_and_teachers():
  lines, out = _describe("configs/digits/distill.py:crd")
  runs = [l.split("]")[0][1:] for l in lines if l.startswith("[")]
  assert runs == ["teacher", "crd"]
  assert out["crd"]["steps"] == 30 * (1437 // 64) and out["crd"]["step_s"] is None
  assert "  teacher teacher: resnet20 from run 'teacher' of this job (/nonexistent/w/teacher)" \
      in lines


def test_every_hyperparameter_is_printed_and_defaults_are_marked():
  lines, _ = _describe("configs/digits/distill.py:crd")
  assert ("  objective crd: loss=crd, weight=0.8, teacher='teacher', student_feature='pooled', "
          "teacher_feature='pooled', feat_dim=128 (default), nce_k=1024, nce_t=0.07 (default), "
          "nce_m=0.5 (default), mode='exact' (default)") in lines


@pytest.mark.parametrize("config,line", [
    ("configs/cifar100/dkd_ls.py:vgg13-vgg8",
     "  objective dkd: loss=dkd, weight=1, teacher='teacher', alpha=15, beta=30, temperature=2, "
     "warmup=20 (default), logit_stand=True"),
    ("configs/cifar100/dist.py",
     "  objective dist: loss=dist, weight=2, teacher='teacher', beta=1 (default), "
     "gamma=1 (default), temperature=4"),
    ("configs/cifar100/ctkd_ls.py",
     "  objective ctkd: loss=ctkd, weight=9, teacher='teacher', base='kd' (default), "
     "t_start=1 (default), t_end=20 (default), decay_max=0 (default), decay_min=-1 (default), "
     "decay_loops=10 (default), alpha=1 (default), beta=2 (default), logit_stand=True"),
    ("configs/cifar100/nkd.py",
     "  objective nkd: loss=nkd, weight=1, teacher='teacher', temperature=3, gamma=3.5"),
    ("configs/cifar100/wttm.py",
     "  objective wttm: loss=wttm, weight=4, teacher='teacher', gamma=0.2"),
    ("configs/cifar100/mlkd.py", "  objective ce_strong: loss=ce, weight=0.1, view='strong', "
                                 "label_smoothing=0 (default)"),
    ("configs/cifar100/mlkd.py", "    makes the view(s) strong: the student and the teachers "
                                 "also run on each, every step"),
])
def test_the_logit_baselines_print_every_hyperparameter_with_defaults_marked(config, line):
  lines, _ = _describe(config)
  assert line in lines, [l for l in lines if "objective" in l]


def test_crd_exact_negatives_on_unlabelled_data_are_refused_before_anything_runs():
  config = load_config("configs/digits/distill.py", "crd")
  config.runs.crd.data = {"unlabeled": True}
  config.runs.crd.objectives = {"crd": {"weight": 1.0}}
  with pytest.raises(KdJaxError, match=r"^\[crd\] config\.objectives\.crd: mode='exact' draws negatives "
                                       r"from the other classes, but the training data is "
                                       r"unlabelled; set mode='uniform'$"):
    _describe_config(config)


def test_an_initialisation_stage_is_shown_under_its_objective():
  lines, _ = _describe("configs/digits/distill.py:ab")
  i = next(i for i, l in enumerate(lines) if l.startswith("  objective ab:"))
  assert lines[i + 1].startswith("    its initialisation phase: ")
  assert lines[i + 1].endswith("; not in the main phase")


def test_evaluation_only_runs_train_nothing():
  lines, out = _describe("configs/consolidation/digits.py:1")
  assert "[scratch_seed0] evaluates a randomly initialised resnet8 (no training)" in lines
  assert out["scratch_seed0"]["steps"] == 0


def test_runs_of_one_step_share_a_measurement_and_the_rest_are_estimated_from_flops():
  """With no time to measure more, one distinct step is measured (the one weighing most) and
  every other is estimated from XLA's cost analysis at the FLOP rate measured."""
  config = load_config("configs/digits/scarce_labels.py")
  config.runs = {k: v for k, v in config.runs.items() if not k.endswith("seed2")}
  lines = []
  out = dry_run.describe(config, "/nonexistent/w", print_fn=lines.append, measure_s=0.0)
  assert [r["how"] for r in out.values()].count(None) == 0
  measured = sorted(n for n, r in out.items() if r["how"] == "measured")
  # One distinct step measured: the seeds of one method (they share it), nothing else.
  assert len(measured) == 2 and measured[0][:-1] == measured[1][:-1], measured
  for name in ("kd", "crd", "scratch"):
    assert out[f"{name}_seed0"]["step_s"] == out[f"{name}_seed1"]["step_s"]
  assert out["kd_seed0"]["step_s"] != out["scratch_seed0"]["step_s"]
  estimated = [l for l in lines if l.startswith("[teacher] estimate: ")]
  assert len(estimated) == 1 and "GFLOP/step by XLA's cost analysis at the" in estimated[0]


def test_a_workdir_that_cannot_be_created_is_the_last_line_and_nothing_is_written(tmp_path):
  """What the run would refuse at its start (``checkpoint.check_writable``), said without
  writing: the workdir lies under a file."""
  (tmp_path / "file").write_text("not a folder")
  lines = []
  dry_run.describe(load_config("configs/digits/distill.py", "kd"), str(tmp_path / "file" / "w"),
                   measure=False, print_fn=lines.append)
  assert lines[-1] == (f"kd_jax: training here would stop at its start: workdir "
                       f"{tmp_path}/file/w is not writable ({tmp_path}/file is not a directory): "
                       f"use another --workdir or fix its permissions")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
