"""Loads a config file the way ``--config=<path>[:<arg>]`` does."""
import os

from kd_jax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(path: str, arg: str | None = None):
  return config_lib.from_file(os.path.join(ROOT, path) + (f":{arg}" if arg is not None else ""))


def train_on_mock_imagenet(c, tmp_path) -> dict:
  """``c`` (an ImageNet recipe) trained for 2 steps of 8 images at 32 px on
  ``tfds.testing.mock_data``, a random resnet18 with 1000 classes standing in for its teacher
  ``teacher`` (the same logits shape; saved under ``tmp_path``): the run's results."""
  import jax
  import tensorflow_datasets as tfds
  from kd_jax import checkpoint as ckpt_lib
  from kd_jax import models, plan
  from kd_jax.training import loop
  teacher = models.create("resnet18", 1000)
  path = str(tmp_path / "teacher")
  ckpt_lib.save_model_variables(path, dict(models.init(teacher, jax.random.PRNGKey(0),
                                                       (32, 32, 3))),
                                {"model": "resnet18", "num_classes": 1000})
  c.teachers.teacher.update(model="resnet18", checkpoint=path)
  c.data.image_size, c.data.num_train_examples, c.data.num_eval_examples = 32, 16, 8
  c.batch_size, c.eval_batch_size, c.num_epochs, c.log_every_steps = 8, 8, 1, 1
  config_lib.validate(c)
  with tfds.testing.mock_data(num_examples=16):
    return loop.train_and_evaluate(plan.make_run(c, str(tmp_path / "run")))
