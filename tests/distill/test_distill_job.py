"""A feature-based student trained end to end by the job: a teacher run, then AT + DKD."""
import shutil

import jax
import numpy as np
import pytest

from kd_jax import plot
from kd_jax import job
from tests.builders import make_tiny_config


@pytest.mark.slow
def test_job_trains_a_teacher_then_a_feature_distilled_student(tmp_path, monkeypatch):
  from kd_jax import checkpoint
  from kd_jax.training import build
  teachers = []  # Of each run's initial train state (copied: the steps donate the state).
  create = build.create_train_state

  def recording(*args, **kwargs):
    state = create(*args, **kwargs)
    teachers.append(jax.device_get(state.teachers))
    return state

  monkeypatch.setattr(build, "create_train_state", recording)
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
  assert student["steps"] == 4
  # Every objective is in the step: logged finite and positive at each of the 4 steps, and
  # the minimised total is their weighted sum.
  scalars = plot.read_scalars(str(tmp_path / "student"))
  total = np.zeros(4)
  for name, weight in student["objectives"].items():
    steps, values = scalars[f"train/loss_{name}"]
    assert list(steps) == [1, 2, 3, 4] and np.all(np.isfinite(values)) and np.all(values > 0), name
    total += weight * values
  np.testing.assert_allclose(scalars["train/loss"][1], total, rtol=1e-5)
  # The student was distilled from the trained teacher: its step read the teacher run's
  # final variables, leaf for leaf.
  assert [sorted(t) for t in teachers] == [[], ["t"]]
  trained, meta = checkpoint.load_model_variables(str(tmp_path / "teacher"))
  assert meta["step"] == 4
  used = teachers[1]["t"]
  assert jax.tree.structure(used) == jax.tree.structure(trained)
  for a, b in zip(jax.tree.leaves(used), jax.tree.leaves(trained)):
    np.testing.assert_array_equal(a, b)


def _crd_config(num_epochs):
  cfg = make_tiny_config(num_epochs=num_epochs)
  cfg.runs = {
      "teacher": dict(model="resnet14", num_epochs=2),
      "student": dict(model="resnet8", teachers={"t": dict(model="resnet14", run="teacher")},
                      objectives={"ce": dict(weight=1.0), "kd": dict(weight=1.0),
                                  "crd": dict(weight=0.8, nce_k=64)}),
  }
  return cfg


def _final_state(run_dir):
  import orbax.checkpoint as ocp
  from kd_jax import checkpoint
  ckpts = checkpoint.Checkpoints(str(run_dir), 3)
  step = ckpts.latest_step()
  state = ckpts.latest.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  ckpts.close()
  return step, state["state"]


@pytest.mark.slow
def test_crd_resumed_mid_run_ends_where_the_uninterrupted_run_ends(tmp_path, capsys):
  """The memory bank and its normalisers are checkpointed: stopping after epoch 1 and
  resuming (from step 2, not from scratch) gives the uninterrupted run's final parameters,
  memory and accuracy."""
  import os
  import numpy as np
  straight = job.run(_crd_config(2), str(tmp_path / "straight"))["runs"]["student"]
  shutil.copytree(tmp_path / "straight" / "teacher", tmp_path / "resumed" / "teacher")
  job.run(_crd_config(1), str(tmp_path / "resumed"))  # The same finished teacher, reused.
  os.remove(tmp_path / "resumed" / "student" / "results.json")  # As if stopped after epoch 1.
  capsys.readouterr()
  resumed = job.run(_crd_config(2), str(tmp_path / "resumed"))["runs"]["student"]
  out = capsys.readouterr().out
  assert "[teacher] already finished" in out
  assert (f"[student] resuming from the checkpoint at step 2 (epoch 2, batch 0) in "
          f"{tmp_path / 'resumed' / 'student' / 'checkpoints'}") in out
  assert "[student] step 1:" not in out and "[student] step 3:" in out
  assert resumed["steps"] == straight["steps"] == 4
  assert resumed["test_accuracy"] == straight["test_accuracy"]
  (step_a, a), (step_b, b) = _final_state(tmp_path / "straight" / "student"), \
      _final_state(tmp_path / "resumed" / "student")
  assert step_a == step_b == 4
  memory_a, memory_b = a["objective_state"]["crd"]["memory"], b["objective_state"]["crd"]["memory"]
  assert float(np.asarray(memory_a["z_student"])) > 0
  for x, y in zip(jax.tree.leaves((a["params"], memory_a)), jax.tree.leaves((b["params"], memory_b))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
