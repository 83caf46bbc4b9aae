"""The learning rate a run logs (``train/learning_rate``, step s logs the rate its update used)
at every step of real runs: RepDistiller's step schedule (x0.1 after epochs 150, 180 and 210
of 240, as PyTorch's MultiStepLR stepped once an epoch), a linear warm-up into cosine, and a
warm-up into a step schedule."""
import math

import numpy as np
import pytest

from kd_jax import job, plot
from kd_jax.recipes import repdistiller
from tests.builders import make_tiny_config

SPE = 2  # Steps per epoch: 16 digits in batches of 8.


def _logged_learning_rates(tmp_path, optimizer, num_epochs: int) -> tuple[np.ndarray, float]:
  """(the logged rate of steps 1..num_epochs * SPE, the peak rate) of a digits run."""
  cfg = make_tiny_config(batch_size=8, eval_batch_size=120, num_epochs=num_epochs)
  cfg.data.num_train_examples = 8 * SPE
  cfg.optimizer.update(optimizer)
  cfg.eval_every_epochs = num_epochs
  cfg.checkpoint_every_steps = num_epochs * SPE
  job.run(cfg, str(tmp_path))
  steps, values = plot.read_scalars(str(tmp_path))["train/learning_rate"]
  np.testing.assert_array_equal(steps, np.arange(1, num_epochs * SPE + 1))
  reference = optimizer.get("lr_reference_batch", 0)
  return values, optimizer["lr"] * (8 / reference if reference else 1.0)


@pytest.mark.slow
def test_repdistillers_schedule_decays_at_the_first_step_of_epochs_151_181_and_211(tmp_path):
  """The CIFAR-100 recipe's optimiser (lr 0.05 per 64 images: 0.00625 at batch 8) over its
  240 epochs of 2 steps: epoch 150 ends at step 300, so step 301 is the first at 0.1x, 361 at
  0.01x and 421 at 0.001x."""
  recipe = repdistiller.cifar100_teacher("resnet8").optimizer
  assert tuple(recipe.decay_epochs) == (150, 180, 210) and recipe.schedule == "step"
  lr, peak = _logged_learning_rates(tmp_path, recipe.to_dict(), 240)
  assert peak == 0.00625
  steps = np.arange(1, 481)
  expected = peak * 0.1 ** ((steps > 300).astype(int) + (steps > 360) + (steps > 420))
  for s in (1, 300, 301, 360, 361, 420, 421, 480):
    np.testing.assert_allclose(lr[s - 1], expected[s - 1], rtol=1e-6, err_msg=f"step {s}")
  np.testing.assert_allclose(lr, expected, rtol=1e-6)


@pytest.mark.parametrize("schedule, warmup_epochs, decay_epochs", [
    ("cosine", 2, ()), ("step", 1, (3, 4))])
def test_a_linear_warm_up_then_the_schedule_over_the_rest_of_the_run(
    tmp_path, schedule, warmup_epochs, decay_epochs):
  """5 epochs of 2 steps at lr 0.1: the update of step s uses the rate of k = s - 1 updates
  done: 0.1 k / w for k < w = 2 * warmup_epochs; then cosine from 0.1 to 0 over the 10 - w
  steps left, or 0.1 x0.5 after each of epochs 3 and 4 (from steps 7 and 9)."""
  lr, peak = _logged_learning_rates(
      tmp_path, dict(lr=0.1, lr_reference_batch=0, schedule=schedule, decay_factor=0.5,
                     warmup_epochs=warmup_epochs, decay_epochs=decay_epochs), 5)
  w = warmup_epochs * SPE
  expected = []
  for k in range(10):
    if k < w:
      expected.append(peak * k / w)
    elif schedule == "cosine":
      expected.append(peak * 0.5 * (1 + math.cos(math.pi * (k - w) / (10 - w))))
    else:
      expected.append(peak * 0.5 ** sum(k >= e * SPE for e in decay_epochs))
  np.testing.assert_allclose(lr, expected, rtol=1e-6, atol=1e-9)
