"""Loads a config file the way ``--config=<path>[:<arg>]`` does."""
import os

from kd_jax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(path: str, arg: str | None = None):
  return config_lib.from_file(os.path.join(ROOT, path) + (f":{arg}" if arg is not None else ""))
