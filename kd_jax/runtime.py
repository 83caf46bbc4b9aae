"""Process-level setup shared by the entrypoints."""
from __future__ import annotations

import contextlib
import logging as py_logging
import os
import platform
import sys
from typing import Iterator, Mapping

# glibc >= 2.35 madvises its large allocations for 2 MB transparent huge pages.
_HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_mode() -> str:
  """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'), '' if unknown."""
  if sys.platform != "linux":
    return ""
  try:
    with open(_THP_MODE) as f:
      text = f.read()
  except OSError:
    return ""
  return text[text.find("[") + 1:text.find("]")] if "[" in text else ""


def huge_page_environment(environ: Mapping[str, str], thp_mode: str | None = None,
                          libc: tuple[str, str] | None = None) -> dict[str, str] | None:
  """The environment to start a process with so that its malloc uses huge pages, or None
  where that changes nothing. It changes something where the kernel gives huge pages on
  request only (``thp_mode``, default this machine's: 'madvise'), glibc (``libc`` as
  ``platform.libc_ver()``, default this one) is 2.35 or newer, the tunable is not set yet
  and ``KD_JAX_HUGE_PAGES`` is not '0'."""
  thp_mode = _thp_mode() if thp_mode is None else thp_mode
  name, version = platform.libc_ver() if libc is None else libc
  if (thp_mode != "madvise" or name != "glibc" or environ.get("KD_JAX_HUGE_PAGES") == "0"
      or "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", "")):
    return None
  try:
    if tuple(int(v) for v in version.split(".")[:2]) < (2, 35):
      return None
  except ValueError:
    return None
  tunables = ":".join(t for t in (environ.get("GLIBC_TUNABLES", ""), _HUGE_PAGES_TUNABLE) if t)
  return {**environ, "GLIBC_TUNABLES": tunables}


def huge_pages() -> bool:
  """Whether this process's large host allocations get transparent huge pages: the kernel
  gives them to every mapping, or on request and glibc's malloc asks."""
  mode = _thp_mode()
  return mode == "always" or (
      mode == "madvise" and _HUGE_PAGES_TUNABLE in os.environ.get("GLIBC_TUNABLES", ""))


def restart_with_huge_pages() -> None:
  """Re-executes this process (same pid and command line) with glibc's malloc on huge pages,
  where ``huge_page_environment`` says that changes something; call it first thing in an
  entrypoint. XLA:CPU allocates a step's temporaries (hundreds of MB) afresh at every step:
  on 4 KB pages each step pays ~100k page faults and the TLB misses of im2col's strided
  reads (a resnet8x4 train step on 2 cores: 816 -> 696 ms)."""
  env = huge_page_environment(os.environ)
  if env is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


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
