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
  assert lines[i + 1].startswith("    its initialisation stage: ")
  assert lines[i + 1].endswith("; not in the main stage")


def test_evaluation_only_runs_train_nothing():
  lines, out = _describe("configs/consolidation/digits.py:1")
  assert "[scratch_seed0] evaluates a randomly initialised resnet8 (no training)" in lines
  assert out["scratch_seed0"]["steps"] == 0
