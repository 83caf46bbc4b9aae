"""NaN/Inf for real: an absurd learning rate stops the command with one line naming the step
and keeping the last good checkpoint; with config.skip_nonfinite_steps a bad step is skipped
(no update) and counted instead."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kd_jax import checkpoint
from kd_jax import models
from kd_jax.distill import parsing
from kd_jax.distill.step import make_train_step

from tests import builders
from tests import forkserver
from tests.commands import REPO, train_command



@pytest.mark.slow
def test_an_absurd_learning_rate_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
  # lr 1e4 reached by a 2-epoch warm-up: a few finite steps (checkpointed every 2), then overflow.
  proc = forkserver.run(
      train_command(tmp_path, "--config.num_epochs=3", "--config.optimizer.lr=1e4",
                    "--config.optimizer.warmup_epochs=2", "--config.checkpoint_every_steps=2"),
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  match = re.fullmatch(
      r"kd_jax: error: \[train\] stopped at step (\d+): the (loss|gradients|loss or its gradients) "
      r"became non-finite"
      r".*; nothing from that step on was applied; the last good checkpoint \(step (\d+)\) is "
      r"kept in (\S+)\. Lower config\.optimizer\.lr \(now 10000\.0\), check the data, or set "
      r"config\.skip_nonfinite_steps=True to skip such steps", line)
  assert match, line
  bad, kept = int(match.group(1)), int(match.group(3))
  assert 0 < kept < bad and match.group(4) == f"{tmp_path}/checkpoints"
  variables, meta = checkpoint.load_model_variables(str(tmp_path))
  assert meta["step"] == kept
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(variables))
  assert not os.path.exists(tmp_path / "results.json")


def _state_and_step(skip):
  model = models.create("resnet8", 10)
  tx = optax.sgd(0.1)
  objs = parsing.parse_objectives({"ce": dict(weight=1.0)}, [], has_labels=True)
  state = builders.train_state(model, objs, tx)
  return state, jax.jit(make_train_step(model, {}, objs, tx, True, skip_nonfinite=skip))


def _batch(seed, nan=False):
  image = jax.random.normal(jax.random.PRNGKey(seed), (4, 8, 8, 1))
  if nan:
    image = image.at[0, 0, 0, 0].set(jnp.nan)
  return {"image": image, "label": jnp.arange(4), "index": jnp.arange(4)}


def test_skip_mode_skips_a_nan_step_counts_it_and_trains_on():
  state, step = _state_and_step(skip=True)
  rng = jax.random.PRNGKey(1)
  after_nan, m1 = step(state, _batch(0, nan=True), rng)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(after_nan.params)):
    np.testing.assert_array_equal(a, b)  # Nothing applied.
  assert int(after_nan.step) == 1 and int(after_nan.bad_step) == -1
  after_good, m2 = step(after_nan, _batch(1), rng)
  moved = [not np.array_equal(a, b) for a, b in
           zip(jax.tree.leaves(after_nan.params), jax.tree.leaves(after_good.params))]
  assert any(moved)
  metrics = m1.merge(m2).compute()
  assert int(metrics["skipped_steps"]) == 1
  # The loss is averaged over the applied step only: finite, and equal to step 2's.
  np.testing.assert_allclose(metrics["loss"], m2.compute()["loss"], rtol=1e-6)


def test_without_skip_mode_a_nan_step_marks_the_state_and_stops_updates():
  state, step = _state_and_step(skip=False)
  rng = jax.random.PRNGKey(1)
  after_nan, _ = step(state, _batch(0, nan=True), rng)
  after_good, _ = step(after_nan, _batch(1), rng)
  assert int(after_good.bad_step) == 0
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(after_good.params)):
    np.testing.assert_array_equal(a, b)
