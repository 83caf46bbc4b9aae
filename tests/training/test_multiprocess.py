"""Two processes on 127.0.0.1 (gloo CPU collectives) train one model together."""
import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_and_only_process_zero_writes(tmp_path):
  port = _free_port()
  cmd = [sys.executable, "-m", "kd_jax.train", "--config=configs/digits/supervised.py",
         f"--workdir={tmp_path}", "--config.num_epochs=2", "--config.batch_size=32",
         "--config.data.num_train_examples=128", "--config.log_every_steps=2"]
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
  assert "8/8 epoch 2/2" in outs[0][0]
  assert "step" not in outs[1][0]  # Process 1 prints no metrics or progress.
  results = json.load(open(tmp_path / "results.json"))
  assert results["steps"] == 8 and 0.0 <= results["test_accuracy"] <= 1.0
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]
