"""One model trained with cross-entropy on the embedded digits (a teacher, or a scratch student).

  python -m kd_jax.train --config=configs/digits/supervised.py --config.model=resnet20
"""
from kd_jax.config import base_config


def get_config():
  c = base_config()
  c.model = "resnet8"
  c.data.name = "sklearn_digits"
  c.batch_size = 64
  c.num_epochs = 30
  c.optimizer.lr = 0.05
  c.optimizer.schedule = "cosine"
  c.log_every_steps = 100
  return c
