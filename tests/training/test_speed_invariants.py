"""What keeps training fast and cheap: one compilation of the step, bf16 that trains as well."""
import jax
import numpy as np
import pytest

from kd_jax import job
from kd_jax import plan
from kd_jax import runtime
from kd_jax.training import loop
from tests.builders import make_tiny_config


def _count_compiles(fn):
  """The number of XLA compilations while ``fn`` runs."""
  events = []

  def listener(event, duration, **_):
    if event == "/jax/core/compile/backend_compile_duration":
      events.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    fn()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)  # Only ours.
  return len(events)


def test_more_steps_and_epochs_compile_nothing_more(tmp_path):
  """1 epoch of 2 steps and 3 epochs of 5 steps (with evaluation and checkpoints) compile the
  same programs: no step recompiles."""
  def run(name, epochs, examples):
    cfg = make_tiny_config(num_epochs=epochs)
    cfg.data.num_train_examples = examples
    return lambda: loop.train_and_evaluate(plan.make_run(cfg, str(tmp_path / name)))

  with runtime.without_persistent_compilation_cache():  # Cache hits are not compilations.
    run("warm", 1, 64)()  # Library-level compilations (e.g. of initialisers) happen once.
    short = _count_compiles(run("short", 1, 64))
    long = _count_compiles(run("long", 3, 160))
  assert short > 0  # The step and the eval step, at least.
  assert short == long, (short, long)


@pytest.mark.slow
def test_bfloat16_runs_on_digits_reach_the_float32_accuracy_within_1_percent_on_average(tmp_path):
  """Three seeds each (one seed's accuracy moves by a few of the 360 test images), trained
  side by side with their own batches (each as a run of that seed alone: tests/training/
  test_seeds.py), one compilation per dtype."""
  def accuracies(dtype):
    cfg = make_tiny_config(num_epochs=8, dtype=dtype, seeds=(0, 1, 2),
                           seed_batches="independent")
    cfg.batch_size = 64
    cfg.data.num_train_examples = -1
    cfg.optimizer.schedule = "cosine"
    cfg.log_every_steps = 22  # Once per epoch: a report per step costs 3-4 s of a 16 s run.
    runs = job.run(cfg, str(tmp_path / dtype))["runs"]
    assert sorted(runs) == ["seed0", "seed1", "seed2"]
    return [r["test_accuracy"] for r in runs.values()]

  f32 = np.mean(accuracies("float32"))
  bf16 = np.mean(accuracies("bfloat16"))
  assert f32 > 0.9
  assert bf16 >= f32 - 0.01, (bf16, f32)
