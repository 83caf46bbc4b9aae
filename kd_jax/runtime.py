"""Process-level setup shared by the entrypoints."""
from __future__ import annotations

import contextlib
import logging as py_logging
import os
from typing import Iterator


def quiet_tensorflow() -> None:
  """TensorFlow is only our input pipeline: keep it off accelerators and out of the console."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  tf.get_logger().setLevel("ERROR")
  py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)


@contextlib.contextmanager
def without_persistent_compilation_cache() -> Iterator[None]:
  """Compilations inside it are done, never read from (or written to) JAX's persistent
  compilation cache (``JAX_COMPILATION_CACHE_DIR``): for measuring or counting them."""
  import jax
  from jax.experimental.compilation_cache import compilation_cache
  old = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  compilation_cache.reset_cache()  # JAX decides once per process whether the cache is used.
  try:
    yield
  finally:
    jax.config.update("jax_enable_compilation_cache", old)
    compilation_cache.reset_cache()
