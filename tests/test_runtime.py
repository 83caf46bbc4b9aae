"""Process setup: the entrypoints restart themselves with glibc's malloc on huge pages."""
import os
import subprocess
import sys

import pytest

from kd_jax import runtime

_GLIBC = ("glibc", "2.36")


def test_huge_pages_are_asked_for_where_the_kernel_gives_them_on_request():
  env = runtime.huge_page_environment({"PATH": "/bin"}, "madvise", _GLIBC)
  assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def test_the_users_tunables_are_kept():
  env = runtime.huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                      "madvise", _GLIBC)
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ, thp_mode, libc", [
    ({}, "always", _GLIBC),  # Every large mapping gets huge pages already.
    ({}, "never", _GLIBC),
    ({}, "", _GLIBC),  # No transparent huge pages (not Linux, or an old kernel).
    ({}, "madvise", ("glibc", "2.31")),  # The tunable is new in 2.35.
    ({}, "madvise", ("", "")),  # musl, macOS.
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", _GLIBC),  # The user's choice.
    ({"KD_JAX_HUGE_PAGES": "0"}, "madvise", _GLIBC),
])
def test_nothing_changes_where_the_tunable_would_not_help_or_is_set(environ, thp_mode, libc):
  assert runtime.huge_page_environment(environ, thp_mode, libc) is None


@pytest.mark.skipif(runtime.huge_page_environment({}) is None,
                    reason="this machine gives huge pages without asking, or not at all")
def test_restart_keeps_the_process_and_its_command_line():
  code = ("import os, sys; from kd_jax import runtime; runtime.restart_with_huge_pages(); "
          "print(os.getpid(), os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])")
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  proc = subprocess.Popen([sys.executable, "-c", code, "a", "--b=c"], env=env,
                          stdout=subprocess.PIPE, text=True)
  try:
    out, _ = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate(timeout=60)
  assert proc.returncode == 0
  assert out.split() == [str(proc.pid), "glibc.malloc.hugetlb=1", "['a',", "'--b=c']"]


@pytest.mark.skipif(runtime.huge_page_environment({}) is None,
                    reason="this machine gives huge pages without asking, or not at all")
def test_huge_pages_says_whether_malloc_asks_for_them():
  code = "from kd_jax import runtime; print(runtime.huge_pages())"
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  run = lambda env: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, check=True, timeout=60).stdout.strip()
  assert run(env) == "False"
  assert run({**env, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) == "True"


_NOISY = "import os\nos.write(2, b'I0000 port.cc:153] a C++ notice\\n')\n"
_IMPORT_NOISY = ("from kd_jax import runtime; runtime._NOISY_IMPORTS = ('noisy_lib',); "
                 "runtime.quiet_library_logs(); import noisy_lib; "
                 "print(repr(runtime.start_up_logs()))")


def _run_noisy(tmp_path, **env):
  (tmp_path / "noisy_lib.py").write_text(_NOISY)
  environ = {k: v for k, v in os.environ.items() if k != runtime.VERBOSE_ENV}
  environ["PYTHONPATH"] = os.pathsep.join([str(tmp_path), environ.get("PYTHONPATH", "")])
  return subprocess.run([sys.executable, "-c", _IMPORT_NOISY], env={**environ, **env},
                        capture_output=True, text=True, check=True, timeout=60)


def test_what_a_library_writes_to_stderr_while_it_loads_is_kept_out_of_the_console(tmp_path):
  proc = _run_noisy(tmp_path)
  assert proc.stderr == ""
  assert proc.stdout == repr("I0000 port.cc:153] a C++ notice\n") + "\n"


def test_kd_jax_verbose_shows_library_start_up_lines(tmp_path):
  proc = _run_noisy(tmp_path, KD_JAX_VERBOSE="1")
  assert proc.stderr == "I0000 port.cc:153] a C++ notice\n"
  assert proc.stdout == "''\n"


def test_captured_stderr_holds_what_was_written_to_the_file_descriptor():
  with runtime.captured_stderr_fd() as text:
    os.write(2, b"C++\n")
  assert text == ["C++\n"]


def test_tensorboard_writer_starts_without_keras_and_the_hparams_keras_callback_still_works(
    tmp_path):
  code = ("import sys; from kd_jax import runtime; runtime.quiet_tensorflow(); "
          "from clu import metric_writers; "
          f"w = metric_writers.SummaryWriter({str(tmp_path)!r}); w.write_hparams({{'lr': 0.1}}); "
          "print('keras' in sys.modules); import tensorflow as tf; "
          "from tensorboard.plugins.hparams import api; "
          f"cb = api.KerasCallback({str(tmp_path)!r}, {{'lr': 0.1}}); "
          "print(isinstance(cb, tf.keras.callbacks.Callback), type(cb).__module__)")
  environ = {k: v for k, v in os.environ.items() if k != runtime.VERBOSE_ENV}
  proc = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                        text=True, check=True, timeout=120)
  assert proc.stdout.split() == ["False", "True", "tensorboard.plugins.hparams._keras"]


def test_tensorflow_starts_without_importing_keras_and_tf_keras_still_loads():
  code = ("import sys; from kd_jax import runtime; runtime.quiet_tensorflow(); "
          "print('keras' in sys.modules); import tensorflow as tf; "
          "print(tf.keras.optimizers.SGD.__name__, 'keras.src.optimizers' in sys.modules)")
  environ = {k: v for k, v in os.environ.items() if k != runtime.VERBOSE_ENV}
  proc = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                        text=True, check=True, timeout=120)
  assert proc.stdout.split() == ["False", "SGD", "True"]
