"""Two processes on 127.0.0.1 (gloo CPU collectives) train one model together."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from kd_jax import checkpoint
from kd_jax import config as config_lib
from kd_jax import models
from kd_jax.data import pipelines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train_on_two_processes(tmp_path, *overrides):
  """Runs the digits supervised config on two processes; returns their (stdout, stderr)."""
  return _on_two_processes(tmp_path, "-m", "kd_jax.train", "--config=configs/digits/supervised.py",
                           f"--workdir={tmp_path}", *overrides)


def _on_two_processes(tmp_path, *args):
  """Runs ``python *args`` as the two processes of one job; returns their (stdout, stderr)."""
  port = _free_port()
  cmd = [sys.executable, *args]
  procs, logs = [], []
  for i in range(2):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
           "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)}
    # Files, not pipes: a process blocked on a full pipe would stall the other's collectives.
    out, err = open(tmp_path / f"out{i}.txt", "w"), open(tmp_path / f"err{i}.txt", "w")
    logs.append((out, err))
    procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err))
  try:
    for p in procs:
      p.wait(timeout=600)
  finally:
    for p in procs:
      p.kill()
    for out, err in logs:
      out.close()
      err.close()
  outs = [((tmp_path / f"out{i}.txt").read_text(), (tmp_path / f"err{i}.txt").read_text())
          for i in range(2)]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def _global_batches(data_cfg, batch_size: int, epochs: int) -> dict[int, list[dict]]:
  """``{epoch: batches}``: the global batches two processes read together, each step process
  0's local batch then process 1's (each process's shard read by a data set of its own, as
  the process would; read before anything trains, so that no thread sees the simulation)."""
  datasets = [pipelines.create_dataset(data_cfg, batch_size) for _ in range(2)]
  out = {}
  for epoch in range(epochs):
    shards = []
    for process, data in enumerate(datasets):
      with pytest.MonkeyPatch.context() as m:
        m.setattr(jax, "process_count", lambda: 2)
        m.setattr(jax, "process_index", lambda p=process: p)
        shards.append(list(data.train_batches(epoch)))
    out[epoch] = [{k: np.concatenate([b[k] for b in parts]) for k in parts[0]}
                  for parts in zip(*shards)]
  return out


@pytest.mark.slow
def test_two_processes_train_and_only_process_zero_writes(tmp_path, monkeypatch):
  """Two processes of one job train one model: what process 0 saves equals what one process
  trains on the same global batches (both processes' local batches, replayed here)."""
  overrides = ["--config.num_epochs=2", "--config.batch_size=32",
               "--config.data.num_train_examples=128", "--config.log_every_steps=2"]
  (tmp_path / "two").mkdir()
  outs = _train_on_two_processes(tmp_path / "two", *overrides)
  assert "8/8 epoch 2/2" in outs[0][0]
  assert "step" not in outs[1][0]  # Process 1 prints no metrics or progress.
  results = json.load(open(tmp_path / "two" / "results.json"))
  assert results["steps"] == 8 and 0.0 <= results["test_accuracy"] <= 1.0
  assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["4", "8"]

  from kd_jax import job  # pylint: disable=g-import-not-at-top
  from kd_jax.data import dataset  # pylint: disable=g-import-not-at-top
  config = config_lib.from_file(os.path.join(REPO, "configs/digits/supervised.py"))
  config.update(dict(num_epochs=2, batch_size=32, log_every_steps=2))
  config.data.num_train_examples = 128
  batches = _global_batches(config.data, 32, 2)

  def replay(self, epoch, start=0, seed=0, stream=0):
    assert (seed, stream) == (config.seed, 0) == (0, 0)
    return iter(batches[epoch][start:])
  monkeypatch.setattr(dataset.Dataset, "train_batches", replay)
  job.run(config, str(tmp_path / "one"))
  one = json.load(open(tmp_path / "one" / "results.json"))
  assert abs(one["test_accuracy"] - results["test_accuracy"]) <= 1 / 360  # A near tie at most.
  two_vars, _ = checkpoint.load_model_variables(str(tmp_path / "two"))
  one_vars, _ = checkpoint.load_model_variables(str(tmp_path / "one"))
  assert jax.tree.structure(two_vars) == jax.tree.structure(one_vars)
  for a, b in zip(jax.tree.leaves(two_vars), jax.tree.leaves(one_vars)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_process_whose_eval_shard_is_empty_evaluates_padding_only(tmp_path):
  """With ``test[:1]`` process 0 reads the one eval example and process 1 none (it steps
  through a padding-only batch). The two-process evaluation of the trained model equals the
  one-process evaluation of its checkpoint (which a one-process reader restores)."""
  _train_on_two_processes(tmp_path, "--config.num_epochs=1", "--config.batch_size=32",
                          "--config.data.num_train_examples=64", "--config.data.eval_split=test[:1]",
                          "--config.eval_batch_size=32")
  results = json.load(open(tmp_path / "results.json"))
  config = config_lib.from_file(os.path.join(REPO, "configs/digits/supervised.py"))
  config.data.eval_split = "test[:1]"
  data = pipelines.create_dataset(config.data, 32, 32)
  variables, _ = checkpoint.load_model_variables(str(tmp_path))
  model = models.create(config.model, 10)
  (batch,) = list(data.eval_batches())
  logits, _ = model.apply(variables, batch["image"], train=False)
  assert batch["mask"].tolist() == [1.0] + [0.0] * 31
  label = int(batch["label"][0])
  loss = float(-jax.nn.log_softmax(logits[0])[label])
  top2 = np.sort(np.asarray(logits[0]))[-2:]
  if top2[1] - top2[0] > 1e-4:  # Not a tie that rounding could break either way.
    assert results["eval"]["accuracy"] == float(int(np.argmax(logits[0])) == label)
  assert results["eval"]["loss"] == pytest.approx(loss, rel=1e-4)


# Each process reads its own shard of the train split, builds the class index of the whole
# split and draws CRD's exact-mode negatives for its own examples.
_CLASS_INDEX = """
import json, sys
import numpy as np
from kd_jax.training import sharding
sharding.maybe_initialize_distributed()
import jax
from kd_jax import config as config_lib
from kd_jax.data import pipelines
from kd_jax.methods.crd import ClassSampler
assert jax.process_count() == 2
data = pipelines.create_dataset(config_lib.base_config().data, 32)
labels = data.train_labels()
local = [int(i) for b in data.train_split_once() for i, m in zip(b["index"], b["mask"]) if m]
batch = next(iter(data.train_batches(0, 0, 0)))
drawn = ClassSampler(labels, 1024, "exact")(batch, np.random.default_rng(jax.process_index()))
json.dump({"labels": labels.tolist(), "local": local, "index": batch["index"].tolist(),
           "contrast": drawn["contrast_index"].tolist()},
          open(sys.argv[1] + f"/{jax.process_index()}.json", "w"))
"""


@pytest.mark.slow
def test_each_process_builds_the_class_index_of_the_whole_split_and_draws_for_its_examples(
    tmp_path):
  script = tmp_path / "class_index.py"
  script.write_text(_CLASS_INDEX)
  _on_two_processes(tmp_path, str(script), str(tmp_path))
  got = [json.load(open(tmp_path / f"{i}.json")) for i in range(2)]
  config = config_lib.base_config()
  whole = pipelines.create_dataset(config.data, 32).train_labels()  # One process.
  for g in got:
    np.testing.assert_array_equal(g["labels"], whole)
  assert np.sum(whole >= 0) == 1437
  local = [set(g["local"]) for g in got]
  assert not local[0] & local[1] and len(local[0] | local[1]) == 1437  # Disjoint shards.
  for g, mine in zip(got, local):
    contrast = np.asarray(g["contrast"])
    assert set(g["index"]) <= mine
    np.testing.assert_array_equal(contrast[:, 0], g["index"])
    for row in contrast:
      assert np.all(whole[row[1:]] != whole[row[0]])
    assert not set(contrast[:, 1:].ravel()) <= mine  # Negatives from the other shard too.
