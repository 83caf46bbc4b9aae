"""Loads a config file the way ``--config=<path>[:<arg>]`` does."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(path: str, arg: str | None = None):
  spec = importlib.util.spec_from_file_location("config_under_test", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()
