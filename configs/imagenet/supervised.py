"""An ImageNet ResNet (torchvision layout) with the standard recipe: 100 epochs, global batch
256, SGD momentum 0.9, lr 0.1 per 256 images (scaled linearly with the batch), weight decay
1e-4, x0.1 after epochs 30, 60 and 90; random-resized crop + flip, centre-crop eval.
ImageNet needs its manual download in <data_dir>/downloads/manual.

  python -m kd_jax.train --config=configs/imagenet/supervised.py --config.model=resnet34
"""
from kd_jax.config import base_config


def get_config():
  c = base_config()
  c.model = "resnet18"
  c.data.name = "imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.cache = False  # Does not fit in memory.
  c.batch_size = 256
  c.eval_batch_size = 256
  c.num_epochs = 100
  c.optimizer.lr = 0.1
  c.optimizer.lr_reference_batch = 256
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_epochs = (30, 60, 90)
  c.log_every_steps = 500
  c.checkpoint_every_steps = 2000
  return c
