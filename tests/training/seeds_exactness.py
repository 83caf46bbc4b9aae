"""The job behind tests/training/test_seeds.py's exactness tests: seed 1 of a run of three
seeds (shared batches, independent batches; the students vmapped, or one after the other)
against a run of seed 1 alone, 20 steps, the losses of every step and the final state.

Also run as a script (``python -m tests.training.seeds_exactness <workdir> <seed_compute>...``)
by the 8-device test, in a process whose CPU is split into 8 devices; it prints ``devices <n>``,
then one line per comparison: ``compare <run> <reference run> <largest relative difference
of the losses> <of the state's arrays> <steps compared>``.
"""
from __future__ import annotations

import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from kd_jax import job
from kd_jax import plot
from tests.builders import make_tiny_config

SEEDS = (0, 1, 2)
# KD with AB (an initialisation phase that trains the student's features and the connectors),
# and CRD (a host sampler and a memory bank): two runs of seeds per mode, not three. Not all
# three in one run: that run's training was unstable enough (its loss rising from 3.6 to 9.2
# between steps) to grow the vmapped students' last-bit differences to 0.3 in 20 steps (8
# devices; KD with CRD: 1.4e-3 on 1). FT's phase would do for AB's, but its weight of 200 on
# 64 examples grew a rounding difference 1.5x per step, as a 4-step teacher does below.
METHODS = {
    "kd_ab": {"ce": dict(weight=0.1), "kd": dict(weight=0.9, teacher="teacher"),
              "ab": dict(weight=1.0, teacher="teacher", init_epochs=1)},
    "crd": {"ce": dict(weight=1.0), "crd": dict(weight=0.8, teacher="teacher", nce_k=16)},
}


def config(computes=("loop", "vmap")):
  """teacher; per method and ``seed_compute`` ``<m>_shared_<compute>`` and
  ``<m>_independent_<compute>`` (seeds 0, 1, 2 side by side; shared: the batches of
  ``config.seed`` = 1; independent: each seed's own, ``config.seed`` left at 0) and
  ``<m>_alone`` (seed 1 alone: a run without seeds, whose batches are seed 1's: the
  reference of seed 1 in both modes)."""
  c = make_tiny_config(num_epochs=10, eval_every_epochs=10, log_every_steps=1)
  c.data.num_train_examples = 64  # 2 steps of 32 per epoch: 20 steps.
  c.checkpoint_every_steps = 20  # The last step's, compared (one per epoch took 25 s of the job).
  # A run of seeds is not bit-equal to a run of one: XLA may round a [seeds, batch] sum or a
  # product with two batch dimensions differently in the last bit. A teacher of 4 steps (a
  # near-random target) made the students' training chaotic enough to grow such a difference
  # 1.5-4x per step, to 3e-3 by step 20 (KD on 8 devices, CRD); from a teacher of 20 steps
  # it stays at rounding level.
  runs = {"teacher": dict(num_epochs=10)}
  teacher = {"teacher": dict(model="resnet8", run="teacher")}
  for m, objectives in METHODS.items():
    common = dict(teachers=teacher, objectives=objectives)
    if m == "kd_ab" and "vmap" not in computes:
      # Crops drawn on the device from the step's data key (folded with the step counter): a
      # seed that drew another key, or one key twice, trains on other images. Looped seeds
      # only (bit-equal): vmapped, the crops made the students' training amplify rounding
      # differences to 3e-4 in 20 steps (KD on 8 devices; CRD's 4e-3 on 1).
      common["data"] = dict(train_augment="pad_crop", augment_on="device")
    for mode in ("shared", "independent"):
      for how in computes:
        # Shared: the batches of config.seed, set to 1; independent: config.seed (0) not read.
        runs[f"{m}_{mode}_{how}"] = dict(common, seeds=SEEDS, seed_batches=mode,
                                         seed_compute=how,
                                         **({"seed": 1} if mode == "shared" else {}))
    runs[f"{m}_alone"] = dict(common, seed=1)
  c.runs = runs
  return c


def _state(run_dir: str) -> list[np.ndarray]:
  """The arrays of the last checkpoint's state: its step counter, parameters (student,
  adapters), BatchNorm statistics, the objectives' state (CRD's memory). (Not the
  optimiser's momentum: that of a bias before a BatchNorm, whose gradient is 0 but for
  rounding, is rounding alone.)"""
  folder = os.path.join(run_dir, "checkpoints")
  step = max(int(s) for s in os.listdir(folder) if s.isdigit())
  tree = ocp.PyTreeCheckpointer().restore(os.path.join(folder, str(step), "state"))
  return [np.asarray(tree["step"], np.float64)] + [
      np.asarray(a, np.float64) for k in ("params", "batch_stats", "objective_state")
      for a in jax.tree.leaves(tree[k])]


def _relative(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> float:
  """Per step, relative to ``scale`` (the step's total loss: an objective's loss, e.g. KD's
  KL of two close distributions, can be a small difference of large terms, whose rounding in
  float32 is large relative to it, not to what is minimised)."""
  return float(np.max(np.abs(a - b) / np.abs(scale)))


def _normwise(a: np.ndarray, b: np.ndarray) -> float:
  """Relative to the largest magnitude of the array ``b`` (a parameter array, whose elements
  near 0 an elementwise ratio would make one rounding in float32 look large)."""
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) if b.size else 0.0


def comparisons(workdir: str, computes=("loop", "vmap")
                ) -> list[tuple[str, str, float, float, int]]:
  """Runs ``config(computes)`` in ``workdir``; ``(run, reference run, losses' largest relative
  difference, the state's, steps compared)`` for seed 1 of each run of seeds."""
  job.run(config(computes), workdir)
  out = []
  for m in METHODS:
    for run in (f"{m}_{mode}_{how}" for mode in ("shared", "independent") for how in computes):
      ref = f"{m}_alone"
      seed_dir, ref_dir = os.path.join(workdir, f"{run}_seed1"), os.path.join(workdir, ref)
      got, want = plot.read_scalars(seed_dir), plot.read_scalars(ref_dir)
      tags = [t for t in want if t.startswith("train/loss")]
      loss = max(_relative(got[t][1], want[t][1], want["train/loss"][1]) for t in tags)
      for t in (t for t in want if t.startswith("init_")):  # The phase's loss, per epoch.
        loss = max(loss, _relative(got[t][1], want[t][1], want[t][1]))
      got_state, want_state = _state(seed_dir), _state(ref_dir)
      assert len(got_state) == len(want_state)
      state = max(_normwise(a, b) for a, b in zip(got_state, want_state))
      out.append((run, ref, loss, state, len(want["train/loss"][0])))
  return out


def check(rows, how: str) -> None:
  """The comparisons' promise: seed 1 of every run of seeds (``how``), both modes, equals
  seed 1 alone to 1e-5 (relative) in every step's losses and the final state, 20 steps."""
  assert [r[:2] for r in rows] == [(f"{m}_{mode}_{how}", f"{m}_alone")
                                   for m in METHODS
                                   for mode in ("shared", "independent")]
  for run, ref, loss, state, steps in rows:
    assert steps == 20
    assert loss <= 1e-5, (run, ref, loss)
    assert state <= 1e-5, (run, ref, state)


if __name__ == "__main__":
  print(f"devices {jax.device_count()}", flush=True)
  for row in comparisons(sys.argv[1], tuple(sys.argv[2:])):
    print("compare", *row, flush=True)
