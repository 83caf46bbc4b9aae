"""The README's "Adding a method" walkthrough, done for real: a new loss function, its
entry in ``objectives.LOSSES`` and in ``recipes.METHODS``, and the digits job trains it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses, plot, recipes
from kd_jax.distill import objectives
from kd_jax.losses.common import float32, l2_normalize
from kd_jax.training import job


def cosine_embedding(f_s: jax.Array, f_t: jax.Array) -> jax.Array:
  """The README's example: ``1 - cos(f_s, f_t)`` per example, mean over B; f_s, f_t [B, D]."""
  f_s, f_t = float32(f_s, f_t)
  cos = jnp.sum(l2_normalize(f_s) * l2_normalize(jax.lax.stop_gradient(f_t)), axis=-1)
  return jnp.mean(1.0 - cos)


@pytest.fixture
def cosine_registered(monkeypatch):
  monkeypatch.setattr(losses, "cosine_embedding", cosine_embedding, raising=False)
  monkeypatch.setitem(objectives.LOSSES, "cosine", objectives.LossSpec(
      objectives._on_maps(losses.cosine_embedding), losses.cosine_embedding,
      needs_teacher=True, reads="pooled"))
  monkeypatch.setitem(recipes.METHODS, "cosine",
                      {"ce": dict(weight=1.0), "cosine": dict(weight=1.0)})


def test_the_example_loss_has_the_hand_derived_value():
  f_s = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  f_t = jnp.array([[1.0, 1.0], [0.0, 5.0]])
  # cos = 1/sqrt(2) and 1: mean of 1 - cos = (1 - 0.70710678) / 2.
  np.testing.assert_allclose(cosine_embedding(f_s, f_t), (1 - 2 ** -0.5) / 2, rtol=1e-6)


@pytest.mark.slow
def test_a_new_method_trains_through_the_digits_recipe(cosine_registered, tmp_path):
  cfg = recipes.digits_distill("cosine")
  cfg.num_epochs = 1
  cfg.data.num_train_examples = 128
  results = job.run(cfg, str(tmp_path))["runs"]["cosine"]
  assert results["objectives"] == {"ce": 1.0, "cosine": 1.0}
  assert results["steps"] == 2
  # The new loss is in the step: logged, positive, and part of the minimised total.
  scalars = plot.read_scalars(str(tmp_path / "cosine"))
  steps, cosine = scalars["train/loss_cosine"]
  assert len(steps) >= 1 and np.all(np.isfinite(cosine)) and np.all(cosine > 0)
  np.testing.assert_allclose(scalars["train/loss"][1],
                             scalars["train/loss_ce"][1] + cosine, rtol=1e-5)
