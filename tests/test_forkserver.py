"""tests/forkserver.py forks only the commands a fork cannot change: ``python -m kd_jax.*``
from the repository, in the server's environment but for variables read at run time."""
import os
import sys

from tests import forkserver

TRAIN = [sys.executable, "-m", "kd_jax.train", "--workdir=/tmp/w"]


def test_a_kd_jax_command_from_the_repository_in_the_same_environment_is_forked():
  env = dict(os.environ)
  assert forkserver._forkable(TRAIN, forkserver.REPO, env, env)
  assert forkserver._forkable(TRAIN, forkserver.REPO, {**env, "KD_JAX_FAULT": "SIGKILL@step:3"},
                              env)


def test_an_environment_read_at_import_another_directory_or_program_starts_fresh():
  env = dict(os.environ)
  assert not forkserver._forkable(TRAIN, forkserver.REPO, {**env, "JAX_PLATFORMS": "cpu,x"}, env)
  assert not forkserver._forkable(TRAIN, forkserver.REPO, {**env, "TFDS_DATA_DIR": "/x"}, env)
  assert not forkserver._forkable(TRAIN, "/", env, env)
  assert not forkserver._forkable([sys.executable, "-c", "pass"], forkserver.REPO, env, env)
  assert not forkserver._forkable([sys.executable, "-m", "pytest"], forkserver.REPO, env, env)
