"""A feature-based student trained end to end by the job: a teacher run, then AT + DKD."""
import pytest

from kd_jax.training import job
from tests.training.conftest import make_tiny_config


@pytest.mark.slow
def test_job_trains_a_teacher_then_a_feature_distilled_student(tmp_path):
  cfg = make_tiny_config()
  cfg.runs = {
      "teacher": dict(model="resnet14"),
      "student": dict(model="resnet8", teachers={"t": dict(model="resnet14", run="teacher")},
                      objectives={"ce": dict(weight=1.0), "at": dict(weight=1000.0),
                                  "dkd": dict(weight=1.0, warmup=1.0),
                                  "rkd": dict(weight=1.0, student_feature="pooled")}),
  }
  results = job.run(cfg, str(tmp_path))
  student = results["runs"]["student"]
  assert student["teachers"] == ["t"]
  assert student["objectives"] == {"ce": 1.0, "at": 1000.0, "dkd": 1.0, "rkd": 1.0}
  assert 0.0 <= student["test_accuracy"] <= 1.0 and student["steps"] == 4
