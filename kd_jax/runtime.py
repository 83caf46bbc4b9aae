"""Process-level setup shared by the entrypoints."""
from __future__ import annotations

import logging as py_logging
import os


def quiet_tensorflow() -> None:
  """TensorFlow is only our input pipeline: keep it off accelerators and out of the console."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  tf.get_logger().setLevel("ERROR")
  py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)
