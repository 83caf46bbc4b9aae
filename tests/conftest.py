"""Test setup: quiet TensorFlow, a private TFDS data_dir, the `slow` marker, one JAX
persistent compilation cache for the session, and workers with malloc on huge pages."""
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN ops on, as on AVX-512 CPUs, where TensorFlow writes start-up notices to
# stderr that no log level silences: every machine then checks that commands stay quiet.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"

# On a GPU or TPU float32 matmuls default to fewer-bit passes (TF32, bfloat16) and some GPU
# reductions are not deterministic; the tests check float32 numbers and bit-identical resumes.
# (On the CPU neither changes a result.)
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      f for f in (os.environ.get("XLA_FLAGS", ""), "--xla_gpu_deterministic_ops=true") if f)

# Triton (which timm loads through torchvision and torch._dynamo, in the ViT tests) crashes
# the process with a segmentation fault when it loads after TensorFlow (each bundles its own
# LLVM): a test process that imported TensorFlow first dies collecting them. Loaded first, both
# work. The CPU build of torch has no triton.
try:
  import triton  # noqa: F401,E402  pylint: disable=unused-import
except ImportError:
  pass

import pytest  # noqa: E402


# The files that take longest (CI's durations, 2-core machine), longest first. With `-n 2
# --dist loadfile` the run ends when the last file does: these start first and the many short
# files fill in at the end. Only the order changes; a file missing here runs after them.
LONGEST_FIRST = (
    "tests/notebooks/test_notebooks.py",
    "tests/training/test_seeds_on_8_devices.py",
    "tests/training/test_seeds.py",
    "tests/reliability/test_sigkill.py",
    "tests/recipes/test_cifar100.py",
    "tests/reliability/test_preemption.py",
    "tests/recipes/test_multi_teacher.py",
    "tests/models/test_zoo.py",
    "tests/training/test_teacher_cache.py",
    "tests/training/test_multiprocess.py",
    "tests/bench/test_benchmarking.py",
    "tests/recipes/test_tables.py",
    "tests/models/test_vit.py",
    "tests/losses/test_vit_reference.py",
    "tests/recipes/test_vit.py",
    "tests/reliability/test_corruption.py",
    "tests/training/test_speed_invariants.py",
    "tests/evaluation/test_downstream.py",
    "tests/test_plan.py",
    "tests/distill/test_distill_job.py",
    "tests/distill/test_adding_a_method.py",
    "tests/training/test_default_job.py",
    "tests/reliability/test_disk.py",
)
_MIN_COMPILE_TIME = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: end-to-end runs (seconds to minutes); run in CI too")
  if hasattr(config.option, "loadscopereorder"):  # xdist: files in the order collected here,
    config.option.loadscopereorder = False        # not by their number of tests.
  # The many `python -m kd_jax.train` processes (and the workers) compile the same programs:
  # they read them from one cache. Set before JAX is imported; the workers inherit it.
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    config.kd_jax_compilation_cache = tempfile.mkdtemp(prefix="kd_jax_tests_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = config.kd_jax_compilation_cache
    # Every program, not only those that took over a second to compile: the commands that
    # start again (the resume, preemption and SIGKILL tests) compile none of them twice
    # (tests/reliability/test_sigkill.py + test_preemption.py: 127-130 s -> 108-110 s).
    config.kd_jax_min_compile_time = _MIN_COMPILE_TIME not in os.environ
    if config.kd_jax_min_compile_time:
      os.environ[_MIN_COMPILE_TIME] = "0"
  # The workers start with malloc on huge pages, as the entrypoints restart themselves with.
  from kd_jax import runtime
  env = runtime.huge_page_environment(os.environ)
  if env is not None:
    config.kd_jax_old_tunables = os.environ.get("GLIBC_TUNABLES")
    os.environ["GLIBC_TUNABLES"] = env["GLIBC_TUNABLES"]


def pytest_unconfigure(config):
  cache = getattr(config, "kd_jax_compilation_cache", None)
  if cache:
    shutil.rmtree(cache, ignore_errors=True)
    del os.environ["JAX_COMPILATION_CACHE_DIR"]
    if config.kd_jax_min_compile_time:
      del os.environ[_MIN_COMPILE_TIME]
  if hasattr(config, "kd_jax_old_tunables"):
    if config.kd_jax_old_tunables is None:
      os.environ.pop("GLIBC_TUNABLES", None)
    else:
      os.environ["GLIBC_TUNABLES"] = config.kd_jax_old_tunables


def pytest_collection_modifyitems(config, items):
  """``LONGEST_FIRST`` files first; the order within a file and of the rest is kept."""
  rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def pytest_collection_finish(session):
  """Quiets TensorFlow when the collected tests imported it (tests/losses do not: 7 s saved)."""
  import sys
  if "tensorflow" in sys.modules:
    from kd_jax.runtime import quiet_tensorflow
    quiet_tensorflow()


@pytest.fixture(scope="session", autouse=True)
def tfds_data_dir(tmp_path_factory):
  """Every test prepares the embedded data in a private TFDS data_dir."""
  path = str(tmp_path_factory.mktemp("tfds"))
  old = os.environ.get("TFDS_DATA_DIR")
  os.environ["TFDS_DATA_DIR"] = path
  yield path
  if old is None:
    os.environ.pop("TFDS_DATA_DIR", None)
  else:
    os.environ["TFDS_DATA_DIR"] = old


@pytest.fixture
def tiny_config():
  from tests.builders import make_tiny_config  # pylint: disable=g-import-not-at-top
  return make_tiny_config


@pytest.fixture(scope="module")
def fast_compilation():
  """XLA's optimisations off for a module: a few steps on big models (or one initialisation)
  do not repay the seconds of compilation they cost."""
  import jax  # pylint: disable=g-import-not-at-top
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)
