"""Teacher outputs cached once over the train split give the same training as running the
teacher in every step."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kd_jax import models
from kd_jax.data import dataset
from kd_jax.distill import host_inputs, parsing, student as student_lib
from kd_jax.distill.objectives import Outputs
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from kd_jax.training import build, teacher_cache
from kd_jax import job
from tests import builders
from tests.builders import make_tiny_config


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation): a few steps each."""

X = jax.ShapeDtypeStruct((4, 8, 8, 1), jnp.float32)


def _needed(objectives_cfg):
  teacher = models.create("resnet14", 10)
  tvars = teacher.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  student = student_lib.create("resnet8", 10)
  objs = parsing.parse_objectives(objectives_cfg, ["t"], True)
  tx = optax.sgd(0.1)
  samplers = builders.samplers(objs, 100)
  state = build.create_train_state(student, {"t": teacher}, {"t": tvars}, objs, tx, (8, 8, 1),
                                  100, 0, None, samplers)
  shapes = {"t": Outputs(*jax.eval_shape(lambda x: teacher.apply(tvars, x), X))}
  make = lambda cached: make_train_step(student, {"t": teacher}, objs, tx, True,
                                        cached_teachers={n: shapes[n] for n in cached})
  batch = {"image": X, "label": jax.ShapeDtypeStruct((4,), jnp.int32),
           "index": jax.ShapeDtypeStruct((4,), jnp.int32), **host_inputs.specs(samplers, 4)}
  return teacher_cache.needed_outputs(make, state, batch, jax.random.PRNGKey(1), shapes)


@pytest.mark.parametrize("objectives_cfg,want", [
    ({"ce": {}, "kd": {}}, ["logits"]),
    ({"ce": {}, "at": {}}, ["logits", "stage1", "stage2", "stage3"]),
    ({"ce": {}, "fitnet": {}}, ["logits", "stage2"]),
    ({"ce": {}, "rkd": {}}, ["logits", "pooled"]),
])
def test_only_the_outputs_the_objectives_read_are_cached(objectives_cfg, want):
  assert sorted(_needed(objectives_cfg)["t"]) == sorted(want)


def _config(cache, objectives_cfg):
  cfg = make_tiny_config()
  cfg.runs = {
      "teacher": dict(model="resnet14", num_epochs=1),
      "student": dict(model="resnet8", teachers={"t": dict(model="resnet14", run="teacher")},
                      objectives=objectives_cfg, teacher_cache=cache),
  }
  return cfg


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
  """The resnet14 teacher's finished run, trained once for the module."""
  workdir = tmp_path_factory.mktemp("teacher_job")
  cfg = _config("", {"ce": {}})
  cfg.runs = {"teacher": cfg.runs.teacher}
  job.run(cfg, str(workdir))
  return workdir / "teacher"


def _workdir(path, teacher_run) -> str:
  """``path`` holding a copy of the finished teacher run, which the job does not train again."""
  shutil.copytree(teacher_run, path / "teacher")
  return str(path)


def _params(run_dir):
  from kd_jax import checkpoint
  variables, _ = checkpoint.load_model_variables(str(run_dir), "latest")
  return variables


def test_a_run_from_the_cache_trains_like_a_run_with_the_teacher(tmp_path, capsys, monkeypatch,
                                                                  teacher_run):
  """KD (the logits), AT (three stage maps) and CRD (the pooled feature, a memory bank and
  host-drawn negatives) in one run: the cache holds what they read, and the run trains as the
  same run with the teacher in every step."""
  objectives_cfg = {"ce": dict(weight=0.1), "kd": dict(weight=0.9),
                    "at": dict(weight=1000.0), "crd": dict(weight=0.8, nce_k=16)}
  plain = job.run(_config("", objectives_cfg),
                  _workdir(tmp_path / "plain", teacher_run))["runs"]["student"]
  assert "teacher outputs cached" not in capsys.readouterr().out
  attached = []
  real_attach = teacher_cache.TeacherCache.attach

  def attach(self, batches):  # Counts the batches that carry the teacher's outputs.
    for batch in real_attach(self, batches):
      attached.append(sorted(k for k in batch if k.startswith(teacher_cache.batch_key("t", ""))))
      yield batch

  monkeypatch.setattr(teacher_cache.TeacherCache, "attach", attach)
  cached = job.run(_config("memory", objectives_cfg),
                   _workdir(tmp_path / "cached", teacher_run))["runs"]["student"]
  assert "[student] teacher outputs cached for 1437 train examples (t: " in capsys.readouterr().out
  assert len(attached) == cached["steps"] == 4
  needed = _needed(objectives_cfg)["t"]
  assert sorted(needed) == ["logits", "pooled", "stage1", "stage2", "stage3"]
  assert all(keys == sorted(teacher_cache.batch_key("t", o) for o in needed)
             for keys in attached)
  assert cached["eval"]["loss"] == pytest.approx(plain["eval"]["loss"], rel=1e-5, abs=1e-6)
  a, b = _params(tmp_path / "plain" / "student"), _params(tmp_path / "cached" / "student")
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-5)  # Float noise of the teacher
    # forward on differently composed batches, grown over 4 steps of a large loss.


def test_a_directory_cache_is_written_once_and_read_by_the_next_run(tmp_path, capsys,
                                                                   teacher_run):
  directory = str(tmp_path / "cache")
  objectives_cfg = {"ce": dict(weight=1.0), "fitnet": dict(weight=10.0)}
  job.run(_config(directory, objectives_cfg), _workdir(tmp_path / "a", teacher_run))
  assert "teacher outputs cached for 1437 train examples" in capsys.readouterr().out
  meta = json.load(open(os.path.join(directory, "meta.json")))
  assert meta["outputs"] == {"t": ["logits", "stage2"]} and meta["index_size"] == 1437
  logits = np.load(os.path.join(directory, "t", "logits.npy"))
  stage2 = np.load(os.path.join(directory, "t", "stage2.npy"))
  assert logits.shape == (1437, 10) and stage2.shape == (1437, 4, 4, 32)
  assert np.all(np.any(logits != 0, axis=1))  # Every example's row was computed.
  shutil.rmtree(tmp_path / "a" / "student")  # The student again, from the same teacher.
  job.run(_config(directory, objectives_cfg), str(tmp_path / "a"))
  assert "teacher outputs read from the cache" in capsys.readouterr().out
  job.run(_config(directory, objectives_cfg),  # Another teacher run (a copy elsewhere):
          _workdir(tmp_path / "b", teacher_run))
  assert "teacher outputs cached for 1437" in capsys.readouterr().out  # computed anew.


def test_a_rebuild_stopped_half_way_leaves_no_cache_that_matches(tmp_path, monkeypatch,
                                                                  teacher_run):
  # The directory holds another cache (its meta.json); this run's computation overwrites the
  # arrays and is stopped after one batch: nothing there may match that other cache any more.
  directory = tmp_path / "cache"
  directory.mkdir()
  other = {"teachers": {"t": {"checkpoint": "/elsewhere", "step": 22}}, "index_size": 1437}
  (directory / "meta.json").write_text(json.dumps(other))
  real = dataset.Dataset.train_split_once

  def one_batch_then_stop(self):
    yield next(iter(real(self)))
    raise KeyboardInterrupt

  monkeypatch.setattr(dataset.Dataset, "train_split_once", one_batch_then_stop)
  with pytest.raises(KeyboardInterrupt):
    job.run(_config(str(directory), {"ce": {}, "kd": {}}), _workdir(tmp_path / "a", teacher_run))
  assert os.path.exists(directory / "t" / "logits.npy")  # The computation had started.
  assert not os.path.exists(directory / "meta.json")
  assert not teacher_cache._matches(str(directory), other)


def test_a_cache_over_augmented_data_is_refused_in_one_line(tmp_path):
  cfg = _config("memory", {"ce": {}, "kd": {}})
  cfg.runs.student.data = dict(train_augment="pad_crop")
  with pytest.raises(KdJaxError, match="config.teacher_cache needs training data without "
                                       "random augmentation .*it is 'pad_crop'"):
    job.run(cfg, str(tmp_path))


def test_used_inputs_sees_through_a_nested_jit():
  """Only ``a`` reaches the output: ``b`` is an argument of the inner jit that it ignores,
  ``c`` is not used at all."""
  inner = jax.jit(lambda a, b: a * 2.0)
  jaxpr = jax.make_jaxpr(lambda a, b, c: inner(a, b) + 1.0)(1.0, 2.0, 3.0).jaxpr
  assert teacher_cache.used_inputs(jaxpr) == [True, False, False]
