"""A CIFAR-100 teacher (or scratch student) with the RepDistiller recipe: 240 epochs, batch 64,
SGD momentum 0.9, weight decay 5e-4, lr 0.05 (0.01 for MobileNet/ShuffleNet students),
x0.1 after epochs 150, 180 and 210; 4-px pad + crop + flip.

  python -m kd_jax.train --config=configs/cifar100/supervised.py --config.model=resnet32x4
"""
from kd_jax.config import base_config


def get_config():
  c = base_config()
  c.model = "resnet32x4"
  c.data.name = "cifar100"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.batch_size = 64
  c.num_epochs = 240
  c.optimizer.lr = 0.05
  c.optimizer.lr_reference_batch = 64
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_epochs = (150, 180, 210)
  c.optimizer.decay_factor = 0.1
  c.log_every_steps = 200
  return c
