import pytest

from kd_jax import config as config_lib


def make_tiny_config(**overrides):
  """resnet8 on digits: 2 steps of 32 per epoch, 2 epochs: a run takes seconds."""
  cfg = config_lib.base_config()
  cfg.batch_size = 32
  cfg.eval_batch_size = 120
  cfg.num_epochs = 2
  cfg.data.num_train_examples = 64
  cfg.log_every_steps = 1
  cfg.optimizer.schedule = "constant"
  for key, value in overrides.items():
    target = cfg
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return cfg


@pytest.fixture
def tiny_config():
  return make_tiny_config
