"""Process-level setup shared by the entrypoints."""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging as py_logging
import os
import platform
import sys
import tempfile
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


# Shows the libraries' start-up logs and warnings (TensorFlow's C++ logs, absl's, TFDS's):
# KD_JAX_VERBOSE=1, or absl's --verbosity flag on the command line. Inherited by the
# huge-pages restart (the environment is kept) and by subprocesses.
VERBOSE_ENV = "KD_JAX_VERBOSE"
# Imported with their C++ start-up lines (written to fd 2 before absl::InitializeLog, which
# TF_CPP_MIN_LOG_LEVEL does not silence: oneDNN's notice on AVX-512 CPUs) captured.
_NOISY_IMPORTS = ("tensorflow",)
_start_up_logs: list[str] = []


def verbose() -> bool:
  """Whether library logs are shown (``KD_JAX_VERBOSE`` set and not '0')."""
  return os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


def start_up_logs() -> str:
  """What the quietly imported libraries wrote to stderr while they loaded."""
  return "".join(_start_up_logs)


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[list[str]]:
  """Redirects file descriptor 2 (what C++ libraries write to, and ``sys.stderr``) into a
  temporary file; the list it yields holds the captured text once the block ends. Where
  fd 2 cannot be duplicated (closed), nothing is captured."""
  captured: list[str] = []
  try:
    saved = os.dup(2)
  except OSError:
    yield captured
    return
  sys.stderr.flush()
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield captured
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      captured.append(tmp.read().decode("utf-8", "replace"))


# TensorFlow's __init__ imports all of Keras (and scikit-learn through it) for SavedModel's
# optimizer registry: 2-3 s of every start-up for what kd_jax never uses. The import fails
# quietly (TensorFlow catches it); ``tf.keras`` and ``import keras`` still load on first use.
_EAGER_KERAS = "keras.src.optimizers"


@contextlib.contextmanager
def _without_eager_keras(name: str) -> Iterator[None]:
  """While TensorFlow's own module runs, ``_EAGER_KERAS`` cannot be imported."""
  if name != "tensorflow" or _EAGER_KERAS in sys.modules:
    yield
    return
  sys.modules[_EAGER_KERAS] = None  # type: ignore[assignment]  # "not importable"
  try:
    yield
  finally:
    if sys.modules.get(_EAGER_KERAS, 0) is None:
      del sys.modules[_EAGER_KERAS]


# clu's TensorBoard writer imports tensorboard's hparams API, whose module ``_keras`` defines
# a Keras callback at import: all of Keras and scikit-learn (2-3 s of every start-up) for a
# class kd_jax never uses. Under ``quiet_library_logs`` that module is one whose ``Callback``
# loads the real module on first use and returns the real callback.
_HPARAMS_KERAS = "tensorboard.plugins.hparams._keras"


def _real_hparams_keras():
  """The real ``_HPARAMS_KERAS`` module, loaded (with Keras) and put in ``sys.modules``."""
  import tensorboard.plugins.hparams as package  # pylint: disable=g-import-not-at-top
  spec = importlib.machinery.PathFinder.find_spec(_HPARAMS_KERAS, package.__path__)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  sys.modules[_HPARAMS_KERAS] = package._keras = module  # pylint: disable=protected-access
  return module


class _KerasCallbackOnFirstUse:
  """Stands for ``tensorboard.plugins.hparams.api.KerasCallback``: creating one returns the
  real callback (a subclass of ``tf.keras.callbacks.Callback``)."""

  def __new__(cls, *args, **kwargs):
    return _real_hparams_keras().Callback(*args, **kwargs)


class _HparamsKerasOnFirstUse(importlib.abc.Loader):
  def create_module(self, spec):
    return None

  def exec_module(self, module):
    module.Callback = _KerasCallbackOnFirstUse


class _QuietLoader(importlib.abc.Loader):
  """Executes a module with fd 2 captured; a failed import writes what it captured."""

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    loaded = False
    text: list[str] = []
    try:
      with captured_stderr_fd() as text, _without_eager_keras(module.__name__):
        self._loader.exec_module(module)
      loaded = True
    finally:
      _start_up_logs.extend(text)
      if not loaded:  # The import failed: what the library said may say why.
        sys.stderr.write("".join(text))

  def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader.
    return getattr(self._loader, name)


class _QuietImports(importlib.abc.MetaPathFinder):
  """Finds ``_NOISY_IMPORTS`` as usual, with their loaders wrapped in ``_QuietLoader``, and
  ``_HPARAMS_KERAS`` as a module whose Keras callback loads on first use."""

  def find_spec(self, fullname, path, target=None):
    if fullname == _HPARAMS_KERAS and not verbose():
      return importlib.util.spec_from_loader(fullname, _HparamsKerasOnFirstUse())
    if fullname not in _NOISY_IMPORTS or verbose():
      return None
    sys.meta_path.remove(self)
    try:
      spec = importlib.util.find_spec(fullname)
    finally:
      sys.meta_path.insert(0, self)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def quiet_library_logs() -> None:
  """Keeps library logs out of the console: call first thing in an entrypoint, before
  TensorFlow is imported. TensorFlow's C++ logs below errors are off
  (``TF_CPP_MIN_LOG_LEVEL=2`` unless set), and what it writes to stderr while it loads is
  kept in ``start_up_logs()`` instead. With ``verbose()`` nothing is hidden."""
  if verbose():
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if not any(isinstance(f, _QuietImports) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietImports())
  for name in ("matplotlib", "matplotlib.font_manager"):  # "building the font cache"
    py_logging.getLogger(name).setLevel(py_logging.ERROR)


def quiet_tensorflow() -> None:
  """TensorFlow is only our input pipeline: keep it off accelerators and out of the console."""
  quiet_library_logs()
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  if not verbose():
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
